// node-soap (npm "soap"): the client is built from the WSDL at run time.
// Usage: node client.js SESSION_WSDL_URL STATE_WSDL_URL
// node-soap does not fill the WSDL's soap:header parts from arguments; its
// users add the token header with addSoapHeader, as here.
'use strict';

const soap = require('soap');

const V2 = 'http://nphase.com/unifiedwebservice/v2';
const DEVICES = [['990000862471854', '89148000000800784259'], ['990000862471855', '89148000000800784260']];

async function main(sessionWsdl, stateWsdl) {
  const session = await soap.createClientAsync(sessionWsdl);
  const state = await soap.createClientAsync(stateWsdl);
  console.log('IMPORTED');

  const [login] = await session.LogInAsync({ Input: { Username: 'demo', Password: 'demo-password' } });
  const token = login.Output.SessionToken;
  console.log(`SESSION ${token}`);

  state.addSoapHeader({ token }, '', 'v2', V2);
  const [result] = await state.GoToStateAsync({
    Input: {
      DeviceList: {
        DeviceIdentifierCollection: DEVICES.map(([imei, iccid]) => ({
          DeviceIdentifiers: {
            DeviceIdentifier: [
              { Kind: 'IMEI', Identifier: imei },
              { Kind: 'ICCID', Identifier: iccid },
            ],
          },
        })),
      },
      ServiceName: 'fast1',
      StateName: 'new active',
      ServicePlan: '4G East',
      MdnZipCode: '94203',
    },
  });
  console.log(`REQUEST ${result.Output.RequestId}`);
}

main(process.argv[2], process.argv[3]).catch((error) => {
  console.error(error && error.body ? `${error}\n${error.body}` : error);
  process.exit(1);
});
