// Apache Axis 1.4 client: WSDL2Java generated gen.session and gen.state from
// the served WSDLs (the locators hold the WSDL's soap:address). Axis 1 does not
// bind a header declared in a message of its own, so the token header is set
// on the stub by hand, as Axis users do.
import gen.session.ISessionService;
import gen.session.LogInRequest;
import gen.session.SessionServiceLocator;
import gen.state.BasicHttpBinding_IStateServiceStub;
import gen.state.DeviceIdentifier;
import gen.state.DeviceIdentifierCollection;
import gen.state.GoToStateRequest;
import gen.state.GoToStateResult;
import gen.state.StateServiceLocator;
import org.apache.axis.AxisFault;

public class Client {
    private static final String V2 = "http://nphase.com/unifiedwebservice/v2";
    private static final String[][] DEVICES = {
        {"990000862471854", "89148000000800784259"},
        {"990000862471855", "89148000000800784260"},
    };

    public static void main(String[] args) throws Exception {
        ISessionService session = new SessionServiceLocator().getBasicHttpBinding_ISessionService();
        LogInRequest login = new LogInRequest();
        login.setUsername("demo");
        login.setPassword("demo-password");
        String token = session.logIn(login).getSessionToken();
        System.out.println("SESSION " + token);

        BasicHttpBinding_IStateServiceStub state =
            (BasicHttpBinding_IStateServiceStub) new StateServiceLocator().getBasicHttpBinding_IStateService();
        state.setHeader(V2, "token", token);
        DeviceIdentifierCollection[] devices = new DeviceIdentifierCollection[DEVICES.length];
        for (int i = 0; i < DEVICES.length; i++) {
            devices[i] = new DeviceIdentifierCollection(new DeviceIdentifier[] {
                new DeviceIdentifier("IMEI", DEVICES[i][0]),
                new DeviceIdentifier("ICCID", DEVICES[i][1]),
            });
        }
        GoToStateRequest request = new GoToStateRequest();
        request.setDeviceList(devices);
        request.setServiceName("fast1");
        request.setStateName("new active");
        request.setServicePlan("4G East");
        request.setMdnZipCode("94203");

        // The session has expired (the simulator says so), then a legacy rule broken.
        printFault("EXPIRED_FAULT", state, request);
        request.setSkuNumber("S".repeat(21));
        printFault("CLIENT_FAULT", state, request);
        request.setSkuNumber(null);

        GoToStateResult result = state.goToState(request);
        System.out.println("REQUEST " + result.getRequestId());
    }

    private static void printFault(String key, BasicHttpBinding_IStateServiceStub state, GoToStateRequest request)
            throws Exception {
        try {
            state.goToState(request);
            System.out.println(key + " none: the call succeeded");
        } catch (AxisFault fault) {
            System.out.println(key + " " + fault.getFaultCode().getLocalPart() + " " + fault.getFaultString());
        }
    }
}
