// JAX-WS RI 2.3 client: wsimport generated gen.session and gen.state from the
// served WSDLs; the services read the WSDL again at run time for the address.
// -XadditionalHeaders binds the WSDL's token header (declared in a message of
// its own, as WCF does) as a goToState parameter.
import gen.session.ISessionService;
import gen.session.LogInRequest;
import gen.session.LogInResult;
import gen.session.SessionService;
import gen.state.ArrayOfDeviceIdentifier;
import gen.state.ArrayOfDeviceIdentifierCollection;
import gen.state.DeviceIdentifier;
import gen.state.DeviceIdentifierCollection;
import gen.state.GoToStateRequest;
import gen.state.GoToStateResult;
import gen.state.IStateService;
import gen.state.StateService;
import javax.xml.soap.SOAPFault;
import javax.xml.ws.soap.SOAPFaultException;

public class Client {
    private static final String[][] DEVICES = {
        {"990000862471854", "89148000000800784259"},
        {"990000862471855", "89148000000800784260"},
    };

    public static void main(String[] args) {
        ISessionService session = new SessionService().getBasicHttpBindingISessionService();
        IStateService state = new StateService().getBasicHttpBindingIStateService();

        gen.session.ObjectFactory sessionTypes = new gen.session.ObjectFactory();
        LogInRequest login = new LogInRequest();
        login.setUsername(sessionTypes.createLogInRequestUsername("demo"));
        login.setPassword(sessionTypes.createLogInRequestPassword("demo-password"));
        LogInResult loggedIn = session.logIn(login);
        String token = loggedIn.getSessionToken().getValue();
        System.out.println("SESSION " + token);

        gen.state.ObjectFactory types = new gen.state.ObjectFactory();
        ArrayOfDeviceIdentifierCollection devices = new ArrayOfDeviceIdentifierCollection();
        for (String[] device : DEVICES) {
            ArrayOfDeviceIdentifier ids = new ArrayOfDeviceIdentifier();
            ids.getDeviceIdentifier().add(identifier(types, "IMEI", device[0]));
            ids.getDeviceIdentifier().add(identifier(types, "ICCID", device[1]));
            DeviceIdentifierCollection collection = new DeviceIdentifierCollection();
            collection.setDeviceIdentifiers(types.createDeviceIdentifierCollectionDeviceIdentifiers(ids));
            devices.getDeviceIdentifierCollection().add(collection);
        }
        GoToStateRequest request = new GoToStateRequest();
        request.setDeviceList(types.createGoToStateRequestDeviceList(devices));
        request.setServiceName(types.createGoToStateRequestServiceName("fast1"));
        request.setStateName(types.createGoToStateRequestStateName("new active"));
        request.setServicePlan(types.createGoToStateRequestServicePlan("4G East"));
        request.setMdnZipCode(types.createGoToStateRequestMdnZipCode("94203"));

        // The session has expired (the simulator says so), then a legacy rule broken.
        printFault("EXPIRED_FAULT", state, request, token);
        request.setSkuNumber(types.createGoToStateRequestSkuNumber("S".repeat(21)));
        printFault("CLIENT_FAULT", state, request, token);
        request.setSkuNumber(null);

        GoToStateResult result = state.goToState(request, token);
        System.out.println("REQUEST " + result.getRequestId().getValue());
    }

    private static void printFault(String key, IStateService state, GoToStateRequest request, String token) {
        try {
            state.goToState(request, token);
            System.out.println(key + " none: the call succeeded");
        } catch (SOAPFaultException error) {
            SOAPFault fault = error.getFault();
            System.out.println(key + " " + fault.getFaultCodeAsQName().getLocalPart() + " " + fault.getFaultString());
        }
    }

    private static DeviceIdentifier identifier(gen.state.ObjectFactory types, String kind, String value) {
        DeviceIdentifier id = new DeviceIdentifier();
        id.setKind(types.createDeviceIdentifierKind(kind));
        id.setIdentifier(types.createDeviceIdentifierIdentifier(value));
        return id;
    }
}
