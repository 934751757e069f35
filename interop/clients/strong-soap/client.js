// strong-soap (LoopBack): the client is built from the WSDL at run time.
// Usage: node client.js SESSION_WSDL_URL STATE_WSDL_URL
// strong-soap serialises a header by the element the WSDL declares for it, but
// only the headers the caller adds (addSoapHeader with the element's QName and
// its value as $value), as its users do.
'use strict';

const { soap, QName } = require('strong-soap');
const { V2, GO_TO_STATE_INPUT, FAULTING_CALLS, text } = require('../node-calls');

function createClient(url) {
  return new Promise((resolve, reject) => {
    soap.createClient(url, {}, (error, client) => (error ? reject(error) : resolve(client)));
  });
}

function call(client, operation, args) {
  return new Promise((resolve, reject) => {
    client[operation](args, (error, result) => {
      if (error) {
        reject(new Error(`${operation}: ${error.message || error}\nsent: ${client.lastRequest}`));
      } else {
        resolve(result);
      }
    });
  });
}

async function main(sessionWsdl, stateWsdl) {
  const session = await createClient(sessionWsdl);
  const state = await createClient(stateWsdl);
  console.log('IMPORTED');

  const login = await call(session, 'LogIn', { Input: { Username: 'demo', Password: 'demo-password' } });
  const token = login.Output.SessionToken;
  console.log(`SESSION ${token}`);

  state.addSoapHeader({ $value: token }, new QName(V2, 'token'));
  for (const [key, extra] of FAULTING_CALLS) {
    const fault = await new Promise((resolve, reject) => {
      state.GoToState({ Input: { ...GO_TO_STATE_INPUT, ...extra } }, (error) => {
        // strong-soap's fault: the parsed soap:Fault, on error.root.
        if (!error) resolve(null);
        else if (error.root && error.root.Envelope.Body.Fault) resolve(error.root.Envelope.Body.Fault);
        else reject(error);
      });
    });
    console.log(fault ? `${key} ${fault.faultcode} ${text(fault.faultstring)}` : `${key} none: the call succeeded`);
  }
  const result = await call(state, 'GoToState', { Input: GO_TO_STATE_INPUT });
  console.log(`REQUEST ${result.Output.RequestId}`);
}

main(process.argv[2], process.argv[3]).catch((error) => {
  console.error(error);
  process.exit(1);
});
