// The benchmark's peer: DynamicsWebApi (npm dynamics-web-api), the client
// most Dataverse developers use, run by Node against the same emulator as the
// connector and the native baseline (`d365 bench`).
//
//   node bench-dwa.mjs '<job JSON>'
//
// job: {scenario, serverUrl, tokenUrl, clientId, clientSecret, ...sizes}.
// The client-credentials token is fetched here (as a Node app would, with
// fetch) and handed to DynamicsWebApi through onTokenRefresh. Prints one JSON
// line: {ok, ms | samplesMs, count, maxRssKb} or {ok: false, error}.
// Timings start after the module is imported and the token is fetched, except
// for the cold-start scenario, which the caller times from process spawn.
import { readFileSync } from 'node:fs';
import { DynamicsWebApi } from 'dynamics-web-api';

const job = JSON.parse(process.argv[2] ?? '{}');

async function fetchToken() {
  const form = new URLSearchParams({
    grant_type: 'client_credentials',
    client_id: job.clientId,
    client_secret: job.clientSecret,
    scope: `${job.serverUrl}/.default`,
  });
  const res = await fetch(job.tokenUrl, { method: 'POST', body: form });
  if (!res.ok) throw new Error(`token endpoint answered ${res.status}: ${await res.text()}`);
  return (await res.json()).access_token;
}

function client(token) {
  return new DynamicsWebApi({
    serverUrl: job.serverUrl,
    dataApi: { version: '9.2' },
    onTokenRefresh: async () => token,
  });
}

// Node's own peak. On Linux, getrusage's maxRSS (process.resourceUsage) also
// counts the bench process this one was forked from: exec records the
// forked copy's high-water mark, so every run reported the Rust process's
// RSS (≈ 2–3 GiB with the emulator's data) instead of Node's. VmHWM belongs
// to this process's own address space.
const maxRssKb = () => {
  try {
    const status = readFileSync('/proc/self/status', 'utf8');
    const hwm = /^VmHWM:\s+(\d+) kB/m.exec(status);
    if (hwm) return Number(hwm[1]);
  } catch {
    // not Linux
  }
  return process.resourceUsage().maxRSS;
};

async function run() {
  const token = await fetchToken();
  const api = client(token);
  switch (job.scenario) {
    case 'queryEntities': {
      const t0 = performance.now();
      const res = await api.retrieveAll({ collection: 'accounts', maxPageSize: job.pageSize });
      const ms = performance.now() - t0;
      return { ms, count: res.value.length, maxRssKb: maxRssKb() };
    }
    case 'runFetchXml': {
      const t0 = performance.now();
      // Dataverse returns the paging cookie only when asked for it
      // (Prefer odata.include-annotations); DynamicsWebApi's FetchAllRequest
      // documents includeAnnotations for exactly this, and the connector and
      // the native baseline send the same Prefer.
      const res = await api.fetchAll({
        collection: 'accounts',
        fetchXml: job.fetchXml,
        includeAnnotations: 'Microsoft.Dynamics.CRM.fetchxmlpagingcookie,Microsoft.Dynamics.CRM.morerecords',
      });
      const ms = performance.now() - t0;
      return { ms, count: res.value.length, maxRssKb: maxRssKb() };
    }
    case 'getEntity': {
      const samplesMs = [];
      for (const id of job.ids) {
        const t0 = performance.now();
        const rec = await api.retrieve({ collection: 'accounts', key: id });
        samplesMs.push(performance.now() - t0);
        if (!rec || !rec.accountid) throw new Error(`account ${id} came back without accountid`);
      }
      return { samplesMs, count: samplesMs.length };
    }
    case 'runBatch': {
      const t0 = performance.now();
      api.startBatch();
      for (let i = 0; i < job.creates; i++) {
        // Contacts have an alternate key on first and last name: unique per round.
        api.create({ collection: 'contacts', data: { firstname: 'Bench', lastname: `Peer r${job.round} ${i}` } });
      }
      const results = await api.executeBatch();
      const ms = performance.now() - t0;
      // A successful create answers with the new record's id.
      const guid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
      const failed = results.filter((r) => typeof r !== 'string' || !guid.test(r));
      if (failed.length) throw new Error(`${failed.length} batch items failed: ${JSON.stringify(failed[0])}`);
      return { ms, count: results.length };
    }
    case 'coldStart': {
      const who = await api.callFunction('WhoAmI');
      if (!who || !who.UserId) throw new Error('WhoAmI came back without UserId');
      return { count: 1 };
    }
    default:
      throw new Error(`unknown scenario ${job.scenario}`);
  }
}

try {
  const out = await run();
  process.stdout.write(JSON.stringify({ ok: true, ...out }) + '\n');
} catch (e) {
  const msg = e && e.message && e.message !== 'Error' ? e.message : JSON.stringify(e) ?? String(e);
  const extra = e && e.status ? ` (status ${e.status}${e.code ? `, code ${e.code}` : ''})` : '';
  process.stdout.write(JSON.stringify({ ok: false, error: msg + extra }) + '\n');
  process.exit(1);
}
