// Measures what IPC body compression costs and saves for the JS client:
// `volley demo --compression zstd,lz4` serves a generated 200k-row Parquet
// file (scripts/data/big_parquet.py, as cli/tests' big dataset: int64 id,
// float64 value, dictionary-encoded category, string name) and one Node client per codec
// reads it ROUNDS times. Prints one TSV line per round: IPC bytes received,
// seconds from `query` to the last batch decoded, rows per second.
//
//   cd web && npm run build && node scripts/measure-compression.mjs [ROUNDS]
//
// Uses VOLLEY_BIN like the tests (default ../target/debug/volley; measure
// with a release build: VOLLEY_BIN=../target/release/volley).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { connect } from '../src/client.js';
import { startDemo, volleyBin } from '../test/helpers.mjs';

const ROWS = 200_000;
const rounds = Number(process.argv[2] ?? 5);

const dir = mkdtempSync(path.join(os.tmpdir(), 'volley-measure-'));
const parquet = path.join(dir, 'big.parquet');
execFileSync('python3', [fileURLToPath(new URL('../../scripts/data/big_parquet.py', import.meta.url)), parquet, String(ROWS)]);

const demo = await startDemo(['--compression', 'zstd,lz4', '--extra-dataset', `big=${parquet}`]);
try {
  console.log(`# ${volleyBin}, node ${process.version}, ${os.cpus().length} cores (${os.cpus()[0]?.model ?? '?'})`);
  console.log('codec\tround\tipc_bytes\tseconds\trows_per_s');
  for (const compression of [[], ['lz4'], ['zstd']]) {
    const client = await connect({ url: demo.base, session: demo.session, WebSocket, reconnect: false, compression });
    for (let round = 0; round < rounds; round += 1) {
      const started = performance.now();
      const q = client.query('big');
      let rows = 0;
      for await (const batch of q) rows += batch.numRows;
      const seconds = (performance.now() - started) / 1000;
      if (rows !== ROWS) throw new Error(`read ${rows} rows, expected ${ROWS}`);
      console.log(`${q.compression ?? 'none'}\t${round}\t${q.bytesReceived}\t${seconds.toFixed(3)}\t${Math.round(rows / seconds)}`);
    }
    client.close();
  }
} finally {
  await demo.stop();
  rmSync(dir, { recursive: true, force: true });
}
