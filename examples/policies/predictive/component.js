// The component's entry (build.sh builds this file, not policy.js): routes
// the SDK's `log` to the contract's `log` import, then exports the policy.
// The QuickJS engine has no `console`; `node --test` has no
// `wicket:policy/host` module, so the tests import policy.js directly.

import { log } from "wicket:policy/host@0.2.0";
import { setLog } from "../../../sdk/js/wicket-policy.js";

setLog(log);

export { decide } from "./policy.js";
