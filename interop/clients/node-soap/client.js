// node-soap (npm "soap"): the client is built from the WSDL at run time.
// Usage: node client.js SESSION_WSDL_URL STATE_WSDL_URL
// node-soap does not fill the WSDL's soap:header parts from arguments; its
// users add the token header with addSoapHeader, as here.
'use strict';

const soap = require('soap');
const { V2, GO_TO_STATE_INPUT, FAULTING_CALLS, text } = require('../node-calls');

async function main(sessionWsdl, stateWsdl) {
  const session = await soap.createClientAsync(sessionWsdl);
  const state = await soap.createClientAsync(stateWsdl);
  console.log('IMPORTED');

  const [login] = await session.LogInAsync({ Input: { Username: 'demo', Password: 'demo-password' } });
  const token = login.Output.SessionToken;
  console.log(`SESSION ${token}`);

  state.addSoapHeader({ token }, '', 'v2', V2);
  for (const [key, extra] of FAULTING_CALLS) {
    try {
      await state.GoToStateAsync({ Input: { ...GO_TO_STATE_INPUT, ...extra } });
      console.log(`${key} none: the call succeeded`);
    } catch (error) {
      // node-soap's fault: the parsed soap:Fault, on error.root.
      const fault = error.root && error.root.Envelope.Body.Fault;
      if (!fault) throw error;
      console.log(`${key} ${fault.faultcode} ${text(fault.faultstring)}`);
    }
  }
  const [result] = await state.GoToStateAsync({ Input: GO_TO_STATE_INPUT });
  console.log(`REQUEST ${result.Output.RequestId}`);
}

main(process.argv[2], process.argv[3]).catch((error) => {
  console.error(error && error.body ? `${error}\n${error.body}` : error);
  process.exit(1);
});
