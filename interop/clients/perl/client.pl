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

sub fault {  # a SOAP::WSDL fault object, on one line
    my ($fault) = @_;
    my $text = join ': ', map { defined $_ ? "$_" : () } $fault->get_faultcode(), $fault->get_faultstring();
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
my $result = $state->GoToState(
    {
        Input => {
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
        },
    },
    { value => $token },
);
die 'GoToState: ', fault($result), "\n" if not $result;
print 'REQUEST ', $result->get_Output()->get_RequestId()->get_value(), "\n";
