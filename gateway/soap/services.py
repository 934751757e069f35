"""The legacy services: each operation is validation, one upstream call, an answer."""

import time

from spyne import ServiceBase, rpc

from gateway.exceptions import RequestInvalid, SessionMissing
from gateway.soap.models import (
    CallbackRegistration,
    CallbackRegistrationKey,
    GetCallbackRegistrationsRequest,
    GetCallbackRegistrationsResult,
    GoToStateRequest,
    GoToStateResult,
    LogInRequest,
    LogInResult,
    LogOutRequest,
    LogOutResult,
    RegisterCallbackRequest,
    Token,
)
from gateway.translate import callback, gotostate


def _returns(result):
    return {"_returns": result, "_out_variable_name": "Output"}


def _required(value, field):
    if value is None:
        raise RequestInvalid(field, "is required")
    return value


def _session_token(ctx):
    if not ctx.in_header:
        raise SessionMissing()
    return ctx.in_header


class SessionService(ServiceBase):
    @rpc(LogInRequest, **_returns(LogInResult))
    def LogIn(ctx, Input):
        request = _required(Input, "Input")
        username = _required(request.Username, "Username")
        password = _required(request.Password, "Password")
        return LogInResult(SessionToken=ctx.app.runtime.thingspace.login(username, password))

    @rpc(LogOutRequest, **_returns(LogOutResult))
    def LogOut(ctx, Input):
        token = _required(_required(Input, "Input").SessionToken, "SessionToken")
        return LogOutResult(SessionToken=ctx.app.runtime.thingspace.logout(token))


class StateService(ServiceBase):
    __in_header__ = Token

    @rpc(GoToStateRequest, **_returns(GoToStateResult))
    def GoToState(ctx, Input):
        runtime = ctx.app.runtime
        token = _session_token(ctx)
        request = _required(Input, "Input")
        body = gotostate.to_rest(request, runtime.config.defaults.mdn_zip_code)
        request_id = runtime.thingspace.go_to_state(token, body)
        runtime.requests.remember(
            request_id,
            callback.kind_spellings(request),
            time.time(),
            account=body.get("filter", {}).get("accountName"),
            devices=len(body["devices"]) if "devices" in body else None,
        )
        return GoToStateResult(RequestId=request_id)


class CallbackRegistrationService(ServiceBase):
    __in_header__ = Token

    @rpc(RegisterCallbackRequest, **_returns(CallbackRegistrationKey))
    def RegisterCallback(ctx, Input):
        request = _required(Input, "Input")
        ctx.app.runtime.registrar.register(
            _session_token(ctx), request.AccountName, request.ServiceName, request.Url, request.Username, request.Password
        )
        return CallbackRegistrationKey(AccountName=request.AccountName, ServiceName=request.ServiceName)

    @rpc(CallbackRegistrationKey, **_returns(CallbackRegistrationKey))
    def UnregisterCallback(ctx, Input):
        request = _required(Input, "Input")
        ctx.app.runtime.registrar.unregister(_session_token(ctx), request.AccountName, request.ServiceName)
        return CallbackRegistrationKey(AccountName=request.AccountName, ServiceName=request.ServiceName)

    @rpc(GetCallbackRegistrationsRequest, **_returns(GetCallbackRegistrationsResult))
    def GetCallbackRegistrations(ctx, Input):
        account = _required(Input, "Input").AccountName
        registrations = ctx.app.runtime.registrar.registrations(_session_token(ctx), account)
        return GetCallbackRegistrationsResult(
            AccountName=account,
            Registrations=[CallbackRegistration(ServiceName=r.service, Url=r.url, Username=r.username) for r in registrations],
        )


SERVICES = {service.__name__: service for service in (SessionService, StateService, CallbackRegistrationService)}
