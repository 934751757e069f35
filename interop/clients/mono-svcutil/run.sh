#!/usr/bin/env bash
# Mono's svcutil (WCF proxies): one run per WSDL (it imports only the last
# one it is given), mcs compiles them with Client.cs, mono runs it.
# Usage: run.sh SESSION_WSDL_URL STATE_WSDL_URL (in an empty work directory)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
svcutil --noLogo --noConfig -o Session.cs "$1"
svcutil --noLogo --noConfig -o State.cs "$2"
for generated in Session.cs State.cs; do
    grep -q ServiceContractAttribute "$generated" || { echo "svcutil generated no service contract in $generated" >&2; exit 1; }
    # Mono's svcutil reads an operation's action only from wsaw:Action; without
    # it the proxy sends SOAPAction "*" (which the gateway tolerates, WCF not).
    if grep -q 'Action="\*"' "$generated"; then
        echo "svcutil generated Action=\"*\" in $generated: the WSDL lacks wsaw:Action" >&2; exit 1
    fi
done
echo IMPORTED
# Mono's ServiceContractGenerator never writes the [return: MessageParameter]
# that .NET's svcutil writes for a response element not named {Operation}Result,
# so its client would read no result from the WSDL's <Output>. Added here as
# .NET's svcutil would have generated it (a known Mono gap, not the WSDL's).
perl -0pi -e 's/^(\s+)(\S+Result (?:LogIn|LogOut|GoToState)\()/$1\[return: System.ServiceModel.MessageParameterAttribute(Name="Output")]\n$1$2/mg' \
    Session.cs State.cs
mcs -nologo -warn:0 -out:client.exe -r:System.ServiceModel.dll -r:System.Runtime.Serialization.dll \
    -r:System.Web.Services.dll Session.cs State.cs "$here/Client.cs"
mono client.exe "$1" "$2"
