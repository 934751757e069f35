// Mono's svcutil (WCF: ClientBase<T>, DataContractSerializer) generated the
// contracts from the served WSDLs. Mono's svcutil writes no .config, so the
// endpoint address is read from each WSDL's soap:address at run time with
// WCF's own WsdlImporter, on a BasicHttpBinding as the original service had.
// svcutil drops the WSDL's header declaration, so the token header is added
// with an OperationContextScope, as WCF users do.
using System;
using System.Linq;
using System.Net;
using System.ServiceModel;
using System.ServiceModel.Channels;
using System.ServiceModel.Description;
using ServiceDescription = System.Web.Services.Description.ServiceDescription;

using NPhase.UnifiedWebService.APIs.v2.Contract.Common;
using NPhase.UnifiedWebService.APIs.v2.Contract.SessionService;
using NPhase.UnifiedWebService.APIs.v2.Contract.StateService;

public static class Client
{
    const string V2 = "http://nphase.com/unifiedwebservice/v2";

    static readonly string[][] Devices = {
        new[] { "990000862471854", "89148000000800784259" },
        new[] { "990000862471855", "89148000000800784260" },
    };

    static EndpointAddress AddressIn(string wsdlUrl)
    {
        // As svcutil reads it (Mono's MetadataExchangeClient has no HTTP GET mode).
        ServiceDescription wsdl;
        using (var stream = new WebClient().OpenRead(wsdlUrl))
            wsdl = ServiceDescription.Read(stream);
        var metadata = new MetadataSet();
        metadata.MetadataSections.Add(new MetadataSection(MetadataSection.ServiceDescriptionDialect, "", wsdl));
        var endpoints = new WsdlImporter(metadata).ImportAllEndpoints();
        if (endpoints.Count != 1 || endpoints[0].Address == null)
            throw new Exception("expected one endpoint with an address in " + wsdlUrl + ", got " + endpoints.Count);
        return endpoints[0].Address;
    }

    public static int Main(string[] args)
    {
        var session = new SessionServiceClient(new BasicHttpBinding(), AddressIn(args[0]));
        var login = session.LogIn(new LogInRequest { Username = "demo", Password = "demo-password" });
        Console.WriteLine("SESSION " + login.SessionToken);

        var state = new StateServiceClient(new BasicHttpBinding(), AddressIn(args[1]));
        var request = new GoToStateRequest {
            DeviceList = Devices.Select(d => new DeviceIdentifierCollection {
                DeviceIdentifiers = new[] {
                    new DeviceIdentifier { Kind = "IMEI", Identifier = d[0] },
                    new DeviceIdentifier { Kind = "ICCID", Identifier = d[1] },
                },
            }).ToArray(),
            ServiceName = "fast1",
            StateName = "new active",
            ServicePlan = "4G East",
            MdnZipCode = "94203",
        };
        // The session has expired (the simulator says so), then a legacy rule broken.
        PrintFault("EXPIRED_FAULT", state, request, login.SessionToken);
        request.SkuNumber = new string('S', 21);
        PrintFault("CLIENT_FAULT", state, request, login.SessionToken);
        request.SkuNumber = null;

        Console.WriteLine("REQUEST " + GoToState(state, request, login.SessionToken).RequestId);
        return 0;
    }

    static GoToStateResult GoToState(StateServiceClient state, GoToStateRequest request, string token)
    {
        using (new OperationContextScope(state.InnerChannel))
        {
            OperationContext.Current.OutgoingMessageHeaders.Add(MessageHeader.CreateHeader("token", V2, token));
            return state.GoToState(request);
        }
    }

    static void PrintFault(string key, StateServiceClient state, GoToStateRequest request, string token)
    {
        try
        {
            GoToState(state, request, token);
            Console.WriteLine(key + " none: the call succeeded");
        }
        catch (FaultException fault)
        {
            Console.WriteLine(key + " " + fault.Code.Name + " " + fault.Message);
        }
    }
}
