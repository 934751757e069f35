// gSOAP client generated from StateService's WSDL: GoToState with the token
// header the WSDL declares (proxy.soap_header): an expired session and a broken
// rule (each printed as KEY faultcode faultstring), then REQUEST <requestId>.
#include <iostream>
#include <string>

#include "soapBasicHttpBinding_USCOREIStateServiceProxy.h"
#include "BasicHttpBinding_USCOREIStateService.nsmap"

static common__DeviceIdentifier *identifier(soap *ctx, const char *kind, const char *value) {
    common__DeviceIdentifier *id = soap_new_common__DeviceIdentifier(ctx);
    id->Kind = soap_new_std__string(ctx);
    *id->Kind = kind;
    id->Identifier = soap_new_std__string(ctx);
    *id->Identifier = value;
    return id;
}

static std::string *text(soap *ctx, const char *value) {
    std::string *s = soap_new_std__string(ctx);
    *s = value;
    return s;
}

// A call expected to fail: prints KEY faultcode faultstring, as gSOAP read them.
static void print_fault(const char *key, BasicHttpBinding_USCOREIStateServiceProxy &proxy, v2__GoToState &request,
                        std::string &token) {
    v2__GoToStateResponse response;
    proxy.soap_header(&token);
    if (proxy.GoToState(&request, response) == SOAP_OK) {
        std::cout << key << " none: the call succeeded" << std::endl;
        return;
    }
    const char *code = *soap_faultcode(proxy.soap), *string = *soap_faultstring(proxy.soap);
    std::cout << key << " " << (code ? code : "") << " " << (string ? string : "") << std::endl;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        std::cerr << "usage: gotostate SESSION_TOKEN" << std::endl;
        return 2;
    }
    BasicHttpBinding_USCOREIStateServiceProxy proxy;  // endpoint: the WSDL's soap:address
    soap *ctx = proxy.soap;
    const char *devices[][2] = {{"990000862471854", "89148000000800784259"},
                                {"990000862471855", "89148000000800784260"}};

    state__GoToStateRequest *input = soap_new_state__GoToStateRequest(ctx);
    input->DeviceList = soap_new_common__ArrayOfDeviceIdentifierCollection(ctx);
    for (auto &device : devices) {
        common__DeviceIdentifierCollection *collection = soap_new_common__DeviceIdentifierCollection(ctx);
        collection->DeviceIdentifiers = soap_new_common__ArrayOfDeviceIdentifier(ctx);
        collection->DeviceIdentifiers->DeviceIdentifier.push_back(identifier(ctx, "IMEI", device[0]));
        collection->DeviceIdentifiers->DeviceIdentifier.push_back(identifier(ctx, "ICCID", device[1]));
        input->DeviceList->DeviceIdentifierCollection.push_back(collection);
    }
    input->ServiceName = text(ctx, "fast1");
    input->StateName = text(ctx, "new active");
    input->ServicePlan = text(ctx, "4G East");
    input->MdnZipCode = text(ctx, "94203");

    v2__GoToState request;
    request.Input = input;
    v2__GoToStateResponse response;
    std::string token = argv[1];

    // The session has expired (the simulator says so), then a legacy rule broken.
    print_fault("EXPIRED_FAULT", proxy, request, token);
    input->SkuNumber = text(ctx, std::string(21, 'S').c_str());
    print_fault("CLIENT_FAULT", proxy, request, token);
    input->SkuNumber = nullptr;

    proxy.soap_header(&token);  // the header a call received replaces the one it sent: set it each time
    if (proxy.GoToState(&request, response) != SOAP_OK) {
        proxy.soap_stream_fault(std::cerr);
        return 1;
    }
    if (!response.Output || !response.Output->RequestId) {
        std::cerr << "GoToState: no RequestId in the response" << std::endl;
        return 1;
    }
    std::cout << "REQUEST " << *response.Output->RequestId << std::endl;
    return 0;
}
