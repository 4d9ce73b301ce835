// Shared helpers for the tests: start the real `volley demo`, free ports, paths.
import { spawn, execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

export const webRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const repoRoot = path.resolve(webRoot, '..');
export const volleyBin = path.resolve(webRoot, process.env.VOLLEY_BIN ?? '../target/debug/volley');
export const artifactsDir = path.resolve(webRoot, '..', 'test-artifacts', 'web');
export const testdataDir = process.env.VOLLEY_TESTDATA
  ? path.resolve(process.env.VOLLEY_TESTDATA)
  : path.resolve(repoRoot, '..', 'shared', 'testdata');

/** How long the demo may take to print its URL line (first start compiles nothing, but opens sockets and a connector). */
const DEMO_START_TIMEOUT_MS = 60_000;
/** How long the demo may take to exit after SIGTERM before it is killed. */
const DEMO_STOP_TIMEOUT_MS = 5_000;
/** Output kept from the demo for failure messages. */
const DEMO_LOG_BYTES_MAX = 16_384;

export const execFileAsync = promisify(execFile);

/**
 * Why the tests that need the real binary cannot run, or null. In CI
 * (CI=true) a missing binary is a failure, not a skip.
 */
export function missingBinaryReason() {
  if (existsSync(volleyBin)) return null;
  const reason = `VOLLEY_BIN ${volleyBin} does not exist (cargo build -p volley, or set VOLLEY_BIN)`;
  if (process.env.CI === 'true' || process.env.VOLLEY_REQUIRE_BIN === '1') throw new Error(reason);
  return reason;
}

export function ensureArtifactsDir() {
  mkdirSync(artifactsDir, { recursive: true });
  return artifactsDir;
}

/** @returns {Promise<number>} a TCP port free on 127.0.0.1 right now */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {net.AddressInfo} */ (server.address());
      server.close(() => resolve(port));
    });
  });
}

/**
 * @typedef {object} Demo
 * @property {string} base       http://127.0.0.1:PORT
 * @property {string} url        the URL line's URL (with ?session=)
 * @property {string} session    the session token from the URL
 * @property {string|undefined} secret  from the `secret: …` line
 * @property {string|undefined} tenant  from the `tenant: …` line
 * @property {Map<string, number>} datasetRows  from `dataset NAME: N rows` lines
 * @property {() => string} log  stdout+stderr so far (tail)
 * @property {() => Promise<void>} stop
 */

/**
 * Start `VOLLEY_BIN demo --port P --no-open [VOLLEY_DEMO_ARGS…] [extraArgs…]`
 * and wait for the line with `http://127.0.0.1:P/?session=…`.
 * @param {string[]} [extraArgs]
 * @returns {Promise<Demo>}
 */
export async function startDemo(extraArgs = []) {
  const port = await freePort();
  const envArgs = (process.env.VOLLEY_DEMO_ARGS ?? '').split(/\s+/).filter(Boolean);
  const args = ['demo', '--port', String(port), '--no-open', ...envArgs, ...extraArgs];
  const child = spawn(volleyBin, args, {
    cwd: repoRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, VOLLEY_WEB_DIST: path.join(webRoot, 'dist') },
  });
  let log = '';
  const append = (/** @type {string} */ text) => {
    log = (log + text).slice(-DEMO_LOG_BYTES_MAX);
  };
  /** @type {Demo} */
  const demo = {
    base: `http://127.0.0.1:${port}`,
    url: '',
    session: '',
    secret: undefined,
    tenant: undefined,
    datasetRows: new Map(),
    log: () => log,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), DEMO_STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    },
  };
  let pending = '';
  /** @type {(v?: unknown) => void} */
  let onUrl = () => {};
  const urlSeen = new Promise((resolve) => (onUrl = resolve));
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (/** @type {string} */ chunk) => {
    append(chunk);
    pending += chunk;
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) {
      const url = line.match(/(http:\/\/127\.0\.0\.1:\d+\/\?session=[^\s"'<>]+)/);
      if (url && !demo.url) {
        demo.url = url[1];
        demo.session = decodeURIComponent(new URL(url[1]).searchParams.get('session') ?? '');
        onUrl();
      }
      const rows = line.match(/dataset\s+([^\s:]+):\s*(\d+)\s+rows/);
      if (rows) demo.datasetRows.set(rows[1], Number(rows[2]));
      const secret = line.match(/secret:\s*(\S+)/);
      if (secret) demo.secret = secret[1];
      const tenant = line.match(/tenant:\s*(\S+)/);
      if (tenant) demo.tenant = tenant[1];
    }
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', append);
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const timeout = new Promise((resolve) => setTimeout(() => resolve('timeout'), DEMO_START_TIMEOUT_MS).unref());
  const first = await Promise.race([urlSeen.then(() => 'url'), exited, timeout]);
  if (first !== 'url') {
    await demo.stop();
    throw new Error(`volley demo did not print its URL (${JSON.stringify(first)}); ${volleyBin} ${args.join(' ')}\n--- output ---\n${log}`);
  }
  // The info lines (secret, tenant, dataset rows) may follow the URL line.
  await new Promise((resolve) => setTimeout(resolve, 300));
  return demo;
}

/**
 * Wait until `fn` returns a truthy value.
 * @template T
 * @param {() => Promise<T>|T} fn
 * @param {{timeoutMs?: number, intervalMs?: number, what?: string}} [options]
 * @returns {Promise<T>}
 */
export async function waitFor(fn, { timeoutMs = 15_000, intervalMs = 100, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await fn();
    if (last) return last;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
}

/**
 * @typedef {object} ExtraConnector
 * @property {import('node:child_process').ChildProcess} child
 * @property {() => void} kill          SIGKILL (a crash: no goodbye to the gateway)
 * @property {(signal?: NodeJS.Signals) => Promise<void>} stop  send `signal` (default SIGTERM, a clean stop) and wait for the exit
 * @property {() => ExtraConnector} restart  a new process with the same configuration
 * @property {() => string} log
 */

/**
 * Start `volley connector` for the demo's tenant (credential from `volley
 * token --connector`, signed with the demo's printed secret), serving
 * `datasets` (the connector YAML `datasets:` map; JSON is YAML).
 * @param {Demo} demo
 * @param {string} dir  a scratch directory for the configuration
 * @param {Record<string, object>} datasets
 * @returns {Promise<ExtraConnector>}
 */
export async function startConnector(demo, dir, datasets) {
  if (!demo.secret || !demo.tenant) throw new Error(`the demo printed no secret/tenant\n${demo.log()}`);
  const { stdout: token } = await execFileAsync(volleyBin, ['token', '--connector', '--tenant', demo.tenant], {
    env: { ...process.env, VOLLEY_SECRET: demo.secret },
  });
  const config = path.join(dir, 'connector.yaml');
  writeFileSync(config, JSON.stringify({
    gateway: { uri: new URL('/ws/connect', demo.base.replace(/^http/, 'ws')).href },
    tenant: { id: demo.tenant, token: token.trim() },
    performance: { reconnect_delay: 0.2 },
    datasets,
  }));
  const launch = () => {
    let log = '';
    const child = spawn(volleyBin, ['connector', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    const append = (/** @type {Buffer} */ chunk) => {
      log = (log + chunk.toString()).slice(-DEMO_LOG_BYTES_MAX);
    };
    child.stdout.on('data', append);
    child.stderr.on('data', append);
    /** @type {ExtraConnector} */
    const handle = {
      child,
      kill: () => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      },
      stop: (signal = 'SIGTERM') => stopChild(child, signal),
      restart: launch,
      log: () => log,
    };
    return handle;
  };
  return launch();
}

/**
 * Send `signal` and wait for the process to exit (SIGKILL after
 * DEMO_STOP_TIMEOUT_MS).
 * @param {import('node:child_process').ChildProcess} child
 * @param {NodeJS.Signals} signal
 */
async function stopChild(child, signal) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), DEMO_STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
}

/**
 * @typedef {object} Gateway
 * @property {string} base       http://127.0.0.1:PORT
 * @property {string} secret     its VOLLEY_SECRET (sessions and connectors)
 * @property {string} tenant
 * @property {() => Promise<string>} sessionUrl  the dashboard URL with a fresh session token (every dataset)
 * @property {(signal?: NodeJS.Signals) => Promise<number>} restart  stop the process (default SIGTERM), start a new one on the same port; resolves with the ms it was not answering
 * @property {() => Promise<void>} stop
 * @property {() => string} log
 */

/**
 * Start a bare `volley gateway` (no connector) on a free port with a random
 * secret, serving web/dist, and wait until it answers HTTP. Shaped like a
 * {@link Demo} for {@link startConnector}.
 * @returns {Promise<Gateway & Pick<Demo, 'base'|'secret'|'tenant'|'log'>>}
 */
export async function startGateway() {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const secret = randomBytes(32).toString('hex');
  const tenant = 'e2e-tenant';
  let log = '';
  /** @type {import('node:child_process').ChildProcess} */
  let child;
  const launch = async () => {
    child = spawn(volleyBin, ['gateway', '--listen', `127.0.0.1:${port}`, '--workers', '1'], {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, VOLLEY_SECRET: secret, VOLLEY_WEB_DIST: path.join(webRoot, 'dist'), RUST_LOG: process.env.RUST_LOG ?? 'info' },
    });
    const append = (/** @type {Buffer} */ chunk) => {
      log = (log + chunk.toString()).slice(-DEMO_LOG_BYTES_MAX);
    };
    child.stdout?.on('data', append);
    child.stderr?.on('data', append);
    await waitFor(async () => {
      try {
        return (await fetch(`${base}/metrics.json`)).ok;
      } catch {
        return false;
      }
    }, { timeoutMs: DEMO_START_TIMEOUT_MS, intervalMs: 20, what: `volley gateway answering on ${base}` });
  };
  await launch();
  return {
    base,
    secret,
    tenant,
    log: () => log,
    sessionUrl: async () => {
      const { stdout } = await execFileAsync(volleyBin, ['token', '--tenant', tenant, '--user', 'e2e', '--ttl', '3600'], {
        env: { ...process.env, VOLLEY_SECRET: secret },
      });
      return `${base}/?session=${encodeURIComponent(stdout.trim())}`;
    },
    restart: async (signal = 'SIGTERM') => {
      const started = Date.now();
      await stopChild(child, signal);
      await launch();
      return Date.now() - started;
    },
    stop: () => stopChild(child, 'SIGTERM'),
  };
}
