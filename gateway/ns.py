"""Every XML namespace the gateway reads or writes, by the role it plays."""

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
XSD = "http://www.w3.org/2001/XMLSchema"
WSDL = "http://schemas.xmlsoap.org/wsdl/"
WSDL_SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"
SOAP_HTTP_TRANSPORT = "http://schemas.xmlsoap.org/soap/http"
# WS-Addressing's WSDL binding, where WCF states each message's action.
WSAW = "http://www.w3.org/2006/05/addressing/wsdl"

# The legacy service namespace: operation wrappers, the token header, callbacks.
V2 = "http://nphase.com/unifiedwebservice/v2"

_CONTRACT = "http://schemas.datacontract.org/2004/07/NPhase.UnifiedWebService.APIs.v2.Contract."
COMMON = _CONTRACT + "Common"
STATE = _CONTRACT + "StateService"
SESSION = _CONTRACT + "SessionService"
CALLBACK_REGISTRATION = _CONTRACT + "CallbackRegistrationService"

# WCF's namespace for dispatcher faults such as a:DeserializationFailed.
WCF_DISPATCHER = "http://schemas.microsoft.com/net/2005/12/windowscommunicationfoundation/dispatcher"
