// Mono's wsdl (the .NET Framework wsdl.exe: ASMX SoapHttpClientProtocol)
// generated Gen.Session and Gen.State from the served WSDLs; the proxies hold
// the WSDL's soap:address, and the token header is the SoapHeader class the
// WSDL's header declaration generated (named after its type, xs:string).
using System;
using System.Web.Services.Protocols;

public static class Client
{
    static readonly string[][] Devices = {
        new[] { "990000862471854", "89148000000800784259" },
        new[] { "990000862471855", "89148000000800784260" },
    };

    public static int Main(string[] args)
    {
        var session = new Gen.Session.SessionService();
        var login = session.LogIn(new Gen.Session.LogInRequest { Username = "demo", Password = "demo-password" });
        Console.WriteLine("SESSION " + login.SessionToken);

        var state = new Gen.State.StateService();
        state.token = new Gen.State.@string { Text = new[] { login.SessionToken } };
        var devices = new Gen.State.DeviceIdentifierCollection[Devices.Length];
        for (int i = 0; i < Devices.Length; i++)
        {
            devices[i] = new Gen.State.DeviceIdentifierCollection {
                DeviceIdentifiers = new[] {
                    new Gen.State.DeviceIdentifier { Kind = "IMEI", Identifier = Devices[i][0] },
                    new Gen.State.DeviceIdentifier { Kind = "ICCID", Identifier = Devices[i][1] },
                },
            };
        }
        var request = new Gen.State.GoToStateRequest {
            DeviceList = devices,
            ServiceName = "fast1",
            StateName = "new active",
            ServicePlan = "4G East",
            MdnZipCode = "94203",
        };
        // The session has expired (the simulator says so), then a legacy rule broken.
        PrintFault("EXPIRED_FAULT", state, request);
        request.SkuNumber = new string('S', 21);
        PrintFault("CLIENT_FAULT", state, request);
        request.SkuNumber = null;

        var result = state.GoToState(request);
        Console.WriteLine("REQUEST " + result.RequestId);
        return 0;
    }

    static void PrintFault(string key, Gen.State.StateService state, Gen.State.GoToStateRequest request)
    {
        try
        {
            state.GoToState(request);
            Console.WriteLine(key + " none: the call succeeded");
        }
        catch (SoapException fault)
        {
            Console.WriteLine(key + " " + fault.Code.Name + " " + fault.Message);
        }
    }
}
