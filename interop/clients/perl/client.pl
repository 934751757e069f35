#!/usr/bin/perl
# SOAP::WSDL client: wsdl2perl generated the Session* and State* classes from
# the served WSDLs (run.sh); the interfaces hold the WSDL's soap:address, and
# GoToState's second argument is the token header the WSDL declares.
use strict;
use warnings;
use lib 'lib';

use SessionInterfaces::SessionService::BasicHttpBinding_ISessionService;
use StateInterfaces::StateService::BasicHttpBinding_IStateService;

$| = 1;

sub fault {  # a SOAP::WSDL fault object, on one line: faultcode faultstring
    my ($fault) = @_;
    my $text = join ' ', map { defined $_ ? "$_" : () } $fault->get_faultcode(), $fault->get_faultstring();
    $text =~ s/\s+/ /g;
    return $text;
}
my @devices = (['990000862471854', '89148000000800784259'], ['990000862471855', '89148000000800784260']);

my $session = SessionInterfaces::SessionService::BasicHttpBinding_ISessionService->new();
my $login = $session->LogIn({ Input => { Username => 'demo', Password => 'demo-password' } });
die 'LogIn: ', fault($login), "\n" if not $login;
my $token = $login->get_Output()->get_SessionToken()->get_value();
print "SESSION $token\n";

my $state = StateInterfaces::StateService::BasicHttpBinding_IStateService->new();
my %request = (
    DeviceList => {
        DeviceIdentifierCollection => [
            map {
                {
                    DeviceIdentifiers => {
                        DeviceIdentifier => [
                            { Kind => 'IMEI', Identifier => $_->[0] },
                            { Kind => 'ICCID', Identifier => $_->[1] },
                        ],
                    },
                }
            } @devices
        ],
    },
    ServiceName => 'fast1',
    StateName => 'new active',
    ServicePlan => '4G East',
    MdnZipCode => '94203',
);
# The session has expired (the simulator says so), then a legacy rule broken.
for my $call (['EXPIRED_FAULT', {}], ['CLIENT_FAULT', { SkuNumber => 'S' x 21 }]) {
    my ($key, $extra) = @$call;
    my $answer = $state->GoToState({ Input => { %request, %$extra } }, { value => $token });
    # SOAP::WSDL answers a fault with a false Fault11 object instead of dying.
    print $answer ? "$key none: the call succeeded\n" : "$key " . fault($answer) . "\n";
}
my $result = $state->GoToState({ Input => \%request }, { value => $token });
die 'GoToState: ', fault($result), "\n" if not $result;
print 'REQUEST ', $result->get_Output()->get_RequestId()->get_value(), "\n";
