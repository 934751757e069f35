// What the node clients (node-soap, strong-soap) send and read alike: both
// take a call's arguments as plain objects and parse answers the same way.
'use strict';

const V2 = 'http://nphase.com/unifiedwebservice/v2';
const DEVICES = [['990000862471854', '89148000000800784259'], ['990000862471855', '89148000000800784260']];

// GoToState's Input: two devices (IMEI + ICCID each) and the required fields.
const GO_TO_STATE_INPUT = {
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
};

// The two GoToState calls that must fail: the session has expired (the
// simulator says so), then a legacy rule broken (SkuNumber over 20 characters).
const FAULTING_CALLS = [['EXPIRED_FAULT', {}], ['CLIENT_FAULT', { SkuNumber: 'S'.repeat(21) }]];

// An element with attributes (WCF's faultstring has xml:lang) parses as
// { attributes, $value }; one without, as its text.
function text(element) {
  return element && element.$value !== undefined ? element.$value : element;
}

module.exports = { V2, GO_TO_STATE_INPUT, FAULTING_CALLS, text };
