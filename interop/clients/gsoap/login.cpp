// gSOAP client generated from SessionService's WSDL: LogIn, prints SESSION <token>.
#include <iostream>

#include "soapBasicHttpBinding_USCOREISessionServiceProxy.h"
#include "BasicHttpBinding_USCOREISessionService.nsmap"

int main() {
    BasicHttpBinding_USCOREISessionServiceProxy proxy;  // endpoint: the WSDL's soap:address
    v2__LogIn request;
    v2__LogInResponse response;
    session__LogInRequest input;
    std::string username = "demo", password = "demo-password";
    input.Username = &username;
    input.Password = &password;
    request.Input = &input;
    if (proxy.LogIn(&request, response) != SOAP_OK) {
        proxy.soap_stream_fault(std::cerr);
        return 1;
    }
    if (!response.Output || !response.Output->SessionToken) {
        std::cerr << "LogIn: no SessionToken in the response" << std::endl;
        return 1;
    }
    std::cout << "SESSION " << *response.Output->SessionToken << std::endl;
    return 0;
}
