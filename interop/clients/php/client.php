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
$result = $state->GoToState(['Input' => [
    'DeviceList' => ['DeviceIdentifierCollection' => $devices],
    'ServiceName' => 'fast1',
    'StateName' => 'new active',
    'ServicePlan' => '4G East',
    'MdnZipCode' => '94203',
]]);
echo "REQUEST {$result->Output->RequestId}\n";
