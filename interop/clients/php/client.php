<?php
// PHP SoapClient (ext/soap): WSDL mode, document/literal wrapped.
// Usage: php client.php SESSION_WSDL_URL STATE_WSDL_URL
// ext/soap ignores the WSDL's soap:header, so the token header is added by
// hand, as PHP users do.
ini_set('soap.wsdl_cache_enabled', '0');
const V2 = 'http://nphase.com/unifiedwebservice/v2';

[, $sessionWsdl, $stateWsdl] = $argv;
$options = ['trace' => true, 'exceptions' => true, 'cache_wsdl' => WSDL_CACHE_NONE, 'soap_version' => SOAP_1_1];
$session = new SoapClient($sessionWsdl, $options);
$state = new SoapClient($stateWsdl, $options);
echo "IMPORTED\n";

$login = $session->LogIn(['Input' => ['Username' => 'demo', 'Password' => 'demo-password']]);
$token = $login->Output->SessionToken;
echo "SESSION $token\n";

$devices = [];
foreach ([['990000862471854', '89148000000800784259'], ['990000862471855', '89148000000800784260']] as [$imei, $iccid]) {
    $devices[] = ['DeviceIdentifiers' => ['DeviceIdentifier' => [
        ['Kind' => 'IMEI', 'Identifier' => $imei],
        ['Kind' => 'ICCID', 'Identifier' => $iccid],
    ]]];
}
$state->__setSoapHeaders([new SoapHeader(V2, 'token', $token)]);
$request = [
    'DeviceList' => ['DeviceIdentifierCollection' => $devices],
    'ServiceName' => 'fast1',
    'StateName' => 'new active',
    'ServicePlan' => '4G East',
    'MdnZipCode' => '94203',
];
// The session has expired (the simulator says so), then a legacy rule broken.
foreach (['EXPIRED_FAULT' => [], 'CLIENT_FAULT' => ['SkuNumber' => str_repeat('S', 21)]] as $key => $extra) {
    try {
        $state->GoToState(['Input' => $request + $extra]);
        echo "$key none: the call succeeded\n";
    } catch (SoapFault $fault) {
        echo "$key {$fault->faultcode} {$fault->faultstring}\n";
    }
}
$result = $state->GoToState(['Input' => $request]);
echo "REQUEST {$result->Output->RequestId}\n";
