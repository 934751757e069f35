"""The legacy data contracts, as Spyne models.

Type and element names, namespaces and child order are the wire contract of
nPhase Unified Web Service v2 (see CONTRACT.md): the data-contract serializer
on the other side is order-sensitive, so the order of every ``_type_info`` is
the order of the legacy document's parameter tables, not alphabetical.
"""

from spyne import Array, ComplexModel, Unicode

from gateway import ns


def _array_of(item, item_name=None):
    """A WCF collection type: ``ArrayOfX`` holding repeated ``X`` elements."""
    name = item_name or item.get_type_name()
    return Array(item.customize(sub_name=name), type_name=f"ArrayOf{name}")


class Token(Unicode):
    """The ``v2:token`` SOAP header: the SessionToken that LogIn returned."""

    __namespace__ = ns.V2
    __type_name__ = "token"


# -- Common ------------------------------------------------------------------


class DeviceIdentifier(ComplexModel):
    __namespace__ = ns.COMMON
    _type_info = [("Kind", Unicode), ("Identifier", Unicode)]


class DeviceIdentifierCollection(ComplexModel):
    """One device, named by one or more identifiers."""

    __namespace__ = ns.COMMON
    _type_info = [("DeviceIdentifiers", _array_of(DeviceIdentifier))]


class CustomField(ComplexModel):
    __namespace__ = ns.COMMON
    _type_info = [("Name", Unicode), ("Value", Unicode)]


class CustomFieldFilterObject(ComplexModel):
    __namespace__ = ns.COMMON
    _type_info = [("Name", Unicode), ("Value", Unicode)]


# -- StateService ----------------------------------------------------------


class GoToStateRequest(ComplexModel):
    __namespace__ = ns.STATE
    _type_info = [
        ("DeviceList", _array_of(DeviceIdentifierCollection)),
        ("AccountNameFilter", Unicode),
        ("DeviceGroupNameFilter", Unicode),
        ("DeviceServicePlanFilter", Unicode),
        ("DeviceCustomFieldFilter", _array_of(CustomFieldFilterObject)),
        ("ServiceName", Unicode),
        ("StateName", Unicode),
        ("ServicePlan", Unicode),
        ("CarrierIpPoolName", Unicode),
        ("MdnZipCode", Unicode),
        ("CustomFields", _array_of(CustomField)),
        ("DeviceGroupNames", Unicode),
        ("PublicIPRestriction", Unicode),
        ("SkuNumber", Unicode),
    ]


class GoToStateResult(ComplexModel):
    __namespace__ = ns.STATE
    _type_info = [("RequestId", Unicode)]


# -- SessionService --------------------------------------------------------


class LogInRequest(ComplexModel):
    __namespace__ = ns.SESSION
    _type_info = [("Username", Unicode), ("Password", Unicode)]


class LogInResult(ComplexModel):
    __namespace__ = ns.SESSION
    _type_info = [("SessionToken", Unicode)]


class LogOutRequest(ComplexModel):
    __namespace__ = ns.SESSION
    _type_info = [("SessionToken", Unicode)]


class LogOutResult(ComplexModel):
    __namespace__ = ns.SESSION
    _type_info = [("SessionToken", Unicode)]


# -- CallbackRegistrationService -------------------------------------------


class RegisterCallbackRequest(ComplexModel):
    __namespace__ = ns.CALLBACK_REGISTRATION
    _type_info = [
        ("AccountName", Unicode),
        ("ServiceName", Unicode),
        ("Url", Unicode),
        ("Username", Unicode),
        ("Password", Unicode),
    ]


class CallbackRegistrationKey(ComplexModel):
    """A registration's key: UnregisterCallback's Input, and what Register/Unregister answer."""

    __namespace__ = ns.CALLBACK_REGISTRATION
    _type_info = [("AccountName", Unicode), ("ServiceName", Unicode)]


class GetCallbackRegistrationsRequest(ComplexModel):
    __namespace__ = ns.CALLBACK_REGISTRATION
    _type_info = [("AccountName", Unicode)]


class CallbackRegistration(ComplexModel):
    """A legacy listener as the gateway keeps it; its password is never returned."""

    __namespace__ = ns.CALLBACK_REGISTRATION
    _type_info = [("ServiceName", Unicode), ("Url", Unicode), ("Username", Unicode)]


class GetCallbackRegistrationsResult(ComplexModel):
    __namespace__ = ns.CALLBACK_REGISTRATION
    _type_info = [("AccountName", Unicode), ("Registrations", _array_of(CallbackRegistration))]
