// Adobe's JavaScript SDK (@adobe/acc-js-sdk) pushing events the way its Message Center sample does.
//
//   ACC_SDK_DIR=<folder with node_modules> node acc_sdk_client.js '<json>'
//
// <json>: {"url": ..., "mode": "session" | "ims-bearer" | "bearer" | "password", "credential": ...,
//          "service": "nmsRtEvent" | "nmsBatchEvent", "events": [...], "many": false}
// Prints one JSON line: {"ids": [...], "calls": ["xtk:persist#GetEntityIfMoreRecent", ...]} or, when
// the SDK throws, {"error": {...}, "calls": [...]}.
"use strict";

const path = require("path");
const sdk = require(path.join(process.env.ACC_SDK_DIR, "node_modules", "@adobe", "acc-js-sdk"));

const input = JSON.parse(process.argv[2]);
const calls = [];

function connectionParameters() {
  const options = { clientApp: "messagecenter tests" };
  switch (input.mode) {
    case "session": // login/password as the session token, e.g. "mc/<token>"
      return sdk.ConnectionParameters.ofSessionToken(input.url, input.credential, options);
    case "ims-bearer": // Authorization: Bearer on every call, no logon call
      return sdk.ConnectionParameters.ofImsBearerToken(input.url, input.credential, options);
    case "bearer": // xtk:session#BearerTokenLogon, then session and security tokens
      return sdk.ConnectionParameters.ofBearerToken(input.url, input.credential, options);
    case "password": { // xtk:session#Logon, then session and security tokens
      const slash = input.credential.indexOf("/");
      return sdk.ConnectionParameters.ofUserAndPassword(
        input.url, input.credential.substring(0, slash), input.credential.substring(slash + 1), options);
    }
    default:
      throw new Error(`unknown mode ${input.mode}`);
  }
}

(async () => {
  const client = await sdk.init(connectionParameters());
  client.registerObserver({
    onSOAPCall: (soapCall) => calls.push(`${soapCall.urn}#${soapCall.methodName}`),
  });
  try {
    await client.logon();
    const service = client.NLWS[input.service];
    const ids = [];
    if (input.many) {
      ids.push(await service.pushEvents(input.events));
    } else {
      for (const event of input.events) ids.push(await service.pushEvent(event));
    }
    await client.logoff();
    console.log(JSON.stringify({ ids: ids, calls: calls }));
  } catch (ex) {
    console.log(JSON.stringify({
      error: {
        name: ex.name,
        message: ex.message,
        statusCode: ex.statusCode,
        errorCode: ex.errorCode,
        faultCode: ex.faultCode,
        faultString: ex.faultString,
        detail: ex.detail,
      },
      calls: calls,
    }));
  }
})();
