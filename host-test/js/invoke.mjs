// A second, independent host: runs the jco-transpiled connector in Node with
// @bytecodealliance/preview2-shim (its synchronous outgoing wasi:http).
//
//   node invoke.mjs <transpiled-module.js> <connection.json> <action> [inputs-json]
//
// Prints the action's output JSON exactly as the component returned it (so
// it can be compared byte for byte with the wasmtime host), or the error
// record as JSON on stderr with exit code 1.
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';

const [modulePath, connectionPath, action, inputs = '{}'] = process.argv.slice(2);
if (!modulePath || !connectionPath || !action) {
  process.stderr.write('usage: node invoke.mjs <module.js> <connection.json> <action> [inputs-json]\n');
  process.exit(2);
}
const connector = await import(pathToFileURL(resolve(modulePath)).href);
const { type, state, ...settings } = JSON.parse(readFileSync(connectionPath, 'utf8'));
const connection = {
  connectionType: type === 'oauth2AuthCode' ? 'oauth2-auth-code' : 'oauth2-client-credentials',
  settings: JSON.stringify(settings),
  state: state
    ? {
        accessToken: state.accessToken,
        expiresAt: BigInt(state.expiresAt),
        refreshToken: state.refreshToken,
        scope: state.scope,
      }
    : undefined,
};
try {
  const result = connector.actions.invoke(action, connection, inputs);
  process.stdout.write(result.output);
} catch (e) {
  // A WIT `result` error arrives as a thrown ComponentError with `payload`.
  const payload = e && e.payload !== undefined ? e.payload : { kind: 'host', message: String(e) };
  process.stderr.write(JSON.stringify(payload, (_, v) => (typeof v === 'bigint' ? Number(v) : v)) + '\n');
  process.exit(1);
}
