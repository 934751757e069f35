# soap4r (Debian's ruby-soap4r): SOAP::WSDLDriverFactory builds the driver
# from each served WSDL at run time (wsdl2ruby.rb does not start on Ruby 3.1).
# Usage: ruby client.rb SESSION_WSDL_URL STATE_WSDL_URL
#
# soap4r does not send the WSDL's header parts; its users add the token header
# with a SOAP::Header::SimpleHandler, as here. The call names only what it
# sends: soap4r fills each optional collection left out with an empty skeleton
# (a one-item list of nils), which the gateway reads as absent.
require 'soap/wsdlDriver'
require 'soap/header/simplehandler'

$stdout.sync = true
V2 = 'http://nphase.com/unifiedwebservice/v2'
DEVICES = [%w[990000862471854 89148000000800784259], %w[990000862471855 89148000000800784260]]

class TokenHeader < SOAP::Header::SimpleHandler
  def initialize(token)
    super(XSD::QName.new(V2, 'token'))
    @token = token
  end

  def on_simple_outbound
    @token
  end
end

session = SOAP::WSDLDriverFactory.new(ARGV[0]).create_rpc_driver
state = SOAP::WSDLDriverFactory.new(ARGV[1]).create_rpc_driver
puts 'IMPORTED'

login = session.LogIn(:Input => { :Username => 'demo', :Password => 'demo-password' })
token = login.output.sessionToken
puts "SESSION #{token}"

state.headerhandler << TokenHeader.new(token)
request = {
  :DeviceList => {
    :DeviceIdentifierCollection => DEVICES.map { |imei, iccid|
      { :DeviceIdentifiers => { :DeviceIdentifier => [
        { :Kind => 'IMEI', :Identifier => imei },
        { :Kind => 'ICCID', :Identifier => iccid },
      ] } }
    },
  },
  :ServiceName => 'fast1',
  :StateName => 'new active',
  :ServicePlan => '4G East',
  :MdnZipCode => '94203',
}
# The session has expired (the simulator says so), then a legacy rule broken.
[['EXPIRED_FAULT', {}], ['CLIENT_FAULT', { :SkuNumber => 'S' * 21 }]].each do |key, extra|
  begin
    state.GoToState(:Input => request.merge(extra))
    puts "#{key} none: the call succeeded"
  rescue SOAP::FaultError => fault
    # soap4r keeps each as a SOAPElement; data is its text.
    puts "#{key} #{fault.faultcode.data} #{fault.faultstring.data}"
  end
end
result = state.GoToState(:Input => request)
puts "REQUEST #{result.output.requestId}"
