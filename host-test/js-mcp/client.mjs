// An MCP client we did not write — the official TypeScript SDK's Client over
// stdio — driving `d365 mcp` for host-test/tests/mcp.rs. The test hands it a
// plan (argv[2], a JSON file); it runs each step and prints one JSON report
// on stdout. It asserts nothing itself: the Rust test does, on the report.
//
// Plan: { command, args, steps: [...] }. Steps:
//   {op: "list"}                               tools/list
//   {op: "schemas", examples: {tool: {input: example}}}
//        every listed inputSchema checked as JSON Schema 2020-12 by Ajv, and
//        each catalog example validated against its input's schema
//   {op: "call", name, arguments, save?, progress?}
//        tools/call; strings "${saved.path.to.value}" in arguments are
//        replaced from earlier saved results (e.g. an id just created)
//   {op: "resources"}                          resources/list + read of each
//   {op: "cancel", name, arguments, waitMs}
//        tools/call with progress, cancelled (notifications/cancelled) at
//        the first progress notification; then waits waitMs with the
//        session open, so the test can see whether the server went on
// With plan.url instead of plan.command, the client talks to a running
// `d365 mcp --http` over the streamable HTTP transport.
// The report holds each step's result, and the transcript: every message
// the server sent (its stdout as the SDK parsed it) and its stderr.
import { readFileSync } from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import Ajv2020 from 'ajv/dist/2020.js';

const plan = JSON.parse(readFileSync(process.argv[2], 'utf8'));

// Records every message in both directions, otherwise a plain pass-through.
class Recording {
  constructor(inner, log) {
    this.inner = inner;
    this.log = log;
  }
  start() { return this.inner.start(); }
  close() { return this.inner.close(); }
  send(message, options) {
    this.log.push({ dir: 'sent', message });
    return this.inner.send(message, options);
  }
  set onmessage(handler) {
    this.inner.onmessage = (message, extra) => {
      this.log.push({ dir: 'received', message });
      handler(message, extra);
    };
  }
  get onmessage() { return this.inner.onmessage; }
  set onclose(handler) { this.inner.onclose = handler; }
  get onclose() { return this.inner.onclose; }
  set onerror(handler) {
    this.inner.onerror = (error) => {
      this.log.push({ dir: 'error', message: String(error) });
      handler?.(error);
    };
  }
  get onerror() { return this.inner.onerror; }
  get sessionId() { return this.inner.sessionId; }
  setProtocolVersion(v) { this.inner.setProtocolVersion?.(v); }
}

let stderr = '';
let inner;
if (plan.url) {
  inner = new StreamableHTTPClientTransport(new URL(plan.url));
} else {
  inner = new StdioClientTransport({ command: plan.command, args: plan.args, stderr: 'pipe' });
  inner.stderr.on('data', (chunk) => { stderr += chunk.toString(); });
}
const transcript = [];
const client = new Client({ name: 'd365-mcp-test', version: '1.0.0' });
const report = { steps: [] };

// Every array in a schema must say what its items are (an array without
// `items` is what broke VS Code's agent with another Dataverse MCP server).
function arraysWithoutItems(schema, path = '', found = []) {
  if (Array.isArray(schema)) {
    schema.forEach((s, i) => arraysWithoutItems(s, `${path}/${i}`, found));
  } else if (schema && typeof schema === 'object') {
    const types = Array.isArray(schema.type) ? schema.type : [schema.type];
    if (types.includes('array') && !('items' in schema) && !('prefixItems' in schema)) {
      found.push(path || '/');
    }
    for (const [k, v] of Object.entries(schema)) arraysWithoutItems(v, `${path}/${k}`, found);
  }
  return found;
}

function checkSchemas(tools, examples) {
  const out = [];
  for (const tool of tools) {
    // A fresh validator per tool: strict, so an unknown keyword or a
    // malformed schema is an error, not a silently ignored annotation.
    const ajv = new Ajv2020({ strict: true, strictTypes: false, allErrors: true });
    const entry = { name: tool.name, examples: [] };
    entry.metaschemaValid = ajv.validateSchema(tool.inputSchema);
    entry.metaschemaErrors = ajv.errors ? ajv.errorsText(ajv.errors) : null;
    entry.arraysWithoutItems = arraysWithoutItems(tool.inputSchema)
      .concat(arraysWithoutItems(tool.outputSchema ?? {}).map((p) => `outputSchema${p}`));
    const props = tool.inputSchema.properties ?? {};
    entry.requiredNotInProperties = (tool.inputSchema.required ?? []).filter((r) => !(r in props));
    try {
      ajv.compile(tool.inputSchema);
      entry.compiles = true;
    } catch (e) {
      entry.compiles = false;
      entry.compileError = String(e);
    }
    if (tool.outputSchema) {
      entry.outputMetaschemaValid = ajv.validateSchema(tool.outputSchema);
    }
    // Each catalog example, checked against its own input's schema.
    for (const [input, example] of Object.entries(examples[tool.name] ?? {})) {
      const sub = { $schema: 'https://json-schema.org/draft/2020-12/schema', ...props[input] };
      let accepted = false;
      let errors = null;
      if (props[input]) {
        const validate = ajv.compile(sub);
        accepted = validate(example);
        errors = validate.errors;
      } else {
        errors = `no property ${input} in the inputSchema`;
      }
      entry.examples.push({ input, accepted, errors });
    }
    out.push(entry);
  }
  return out;
}

const saved = {};
function substitute(value) {
  if (typeof value === 'string') {
    return value.replace(/\$\{([^}]+)\}/g, (_, path) => {
      let v = saved;
      for (const part of path.split('.')) v = v?.[part];
      if (v === undefined) throw new Error(`nothing saved at ${path}`);
      return String(v);
    });
  }
  if (Array.isArray(value)) return value.map(substitute);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [substitute(k), substitute(v)]));
  }
  return value;
}

try {
  await client.connect(new Recording(inner, transcript));
  report.initialize = {
    serverInfo: client.getServerVersion(),
    capabilities: client.getServerCapabilities(),
    instructions: client.getInstructions(),
  };
  let tools = [];
  for (const step of plan.steps) {
    const result = { op: step.op, name: step.name };
    try {
      if (step.op === 'list') {
        tools = (await client.listTools()).tools;
        result.tools = tools;
      } else if (step.op === 'schemas') {
        result.schemas = checkSchemas(tools, step.examples ?? {});
      } else if (step.op === 'call') {
        const progress = [];
        const options = { timeout: 120000 };
        if (step.progress) {
          options.onprogress = (p) => progress.push(p);
          options.resetTimeoutOnProgress = true;
        }
        const args = substitute(step.arguments ?? {});
        result.arguments = args;
        const r = await client.callTool({ name: step.name, arguments: args }, undefined, options);
        result.isError = r.isError === true;
        result.structuredContent = r.structuredContent ?? null;
        result.text = r.content?.filter((c) => c.type === 'text').map((c) => c.text).join('\n');
        result.progress = progress;
        if (step.save && !result.isError) saved[step.save] = r.structuredContent;
      } else if (step.op === 'cancel') {
        const abort = new AbortController();
        const progress = [];
        const started = Date.now();
        try {
          await client.callTool({ name: step.name, arguments: step.arguments ?? {} }, undefined, {
            signal: abort.signal,
            timeout: 120000,
            onprogress: (p) => {
              progress.push(p);
              abort.abort('the test cancels');
            },
          });
          result.completed = true;
        } catch (e) {
          result.completed = false;
          result.aborted = String(e?.message ?? e);
        }
        result.cancelledAfterMs = Date.now() - started;
        result.progress = progress;
        await new Promise((r) => setTimeout(r, step.waitMs ?? 0));
      } else if (step.op === 'resources') {
        const list = await client.listResources();
        result.resources = list.resources;
        result.read = [];
        for (const r of list.resources) {
          const read = await client.readResource({ uri: r.uri });
          result.read.push({ uri: r.uri, contents: read.contents });
        }
      } else {
        throw new Error(`unknown op ${step.op}`);
      }
    } catch (e) {
      // A protocol error (or the SDK refusing a result): recorded, the
      // test decides whether it was expected.
      result.thrown = { message: String(e?.message ?? e), code: e?.code ?? null };
    }
    report.steps.push(result);
  }
} catch (e) {
  report.fatal = String(e?.stack ?? e);
} finally {
  await client.close().catch(() => {});
  // Let the server's last stderr lines arrive.
  await new Promise((r) => setTimeout(r, 100));
  report.transcript = transcript;
  report.stderr = stderr;
  process.stdout.write(JSON.stringify(report));
}
