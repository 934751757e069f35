"""The legacy services: each operation is validation, one upstream call, an answer."""

from spyne import ServiceBase, rpc

from gateway.exceptions import RequestInvalid, SessionMissing
from gateway.soap.models import (
    GoToStateRequest,
    GoToStateResult,
    LogInRequest,
    LogInResult,
    LogOutRequest,
    LogOutResult,
    Token,
)
from gateway.translate import gotostate


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
        return LogInResult(SessionToken=ctx.app.thingspace.login(username, password))

    @rpc(LogOutRequest, **_returns(LogOutResult))
    def LogOut(ctx, Input):
        token = _required(_required(Input, "Input").SessionToken, "SessionToken")
        return LogOutResult(SessionToken=ctx.app.thingspace.logout(token))


class StateService(ServiceBase):
    __in_header__ = Token

    @rpc(GoToStateRequest, **_returns(GoToStateResult))
    def GoToState(ctx, Input):
        token = _session_token(ctx)
        body = gotostate.to_rest(_required(Input, "Input"), ctx.app.mdn_zip_code)
        return GoToStateResult(RequestId=ctx.app.thingspace.go_to_state(token, body))
