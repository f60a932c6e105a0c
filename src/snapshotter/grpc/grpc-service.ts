/**
 * The gRPC edge of the snapshotter: grpc-js handlers for `containerd.services.snapshots.v1.Snapshots`
 * (the .proto files beside this one), translating messages to `Snapshotter` calls and `SnapshotError`
 * codes to gRPC status codes (../shared/spec/containerd-integration.md §1.7). `List` streams results in
 * chunks of 100 Info, as containerd's own service helper does. `serveSnapshotter` binds a unix socket.
 * This is the only folder that imports @grpc/grpc-js.
 */
import { access, unlink } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { errorCode } from '../../oci/errors.js';
import type { SnapshotErrorCode } from './snapshot-error.js';
import type { Mount, SnapshotInfo, Snapshotter, SnapshotLogger } from './snapshotter.js';

const PROTO = 'snapshots.proto';
const KIND_TO_PROTO = { view: 'VIEW', active: 'ACTIVE', committed: 'COMMITTED' } as const;
const STATUS: Record<SnapshotErrorCode, grpc.status> = {
  NOT_FOUND: grpc.status.NOT_FOUND,
  ALREADY_EXISTS: grpc.status.ALREADY_EXISTS,
  FAILED_PRECONDITION: grpc.status.FAILED_PRECONDITION,
  INVALID_ARGUMENT: grpc.status.INVALID_ARGUMENT,
  UNAVAILABLE: grpc.status.UNAVAILABLE,
};

/** Where the .proto files are: beside this module (src/, tsx) or, from dist/, in the package's src/ tree. */
async function protoDir(): Promise<string> {
  const candidates = [new URL('./', import.meta.url), new URL('../../../src/snapshotter/grpc/', import.meta.url)].map((u) => fileURLToPath(u));
  for (const dir of candidates) {
    if (await access(dir + PROTO).then(() => true, () => false)) return dir;
  }
  throw new Error(`${PROTO} not found in ${candidates.join(' or ')}`);
}

/** The Snapshots service definition, loaded from the .proto files. */
export async function loadSnapshotsService(): Promise<grpc.ServiceDefinition> {
  const def = await protoLoader.load(PROTO, { includeDirs: [await protoDir()], keepCase: true, longs: String, enums: String, defaults: true });
  const pkg = grpc.loadPackageDefinition(def) as unknown as { containerd: { services: { snapshots: { v1: { Snapshots: grpc.ServiceClientConstructor } } } } };
  return pkg.containerd.services.snapshots.v1.Snapshots.service;
}

interface Timestamp {
  seconds: string;
  nanos: number;
}

const ts = (ms: number): Timestamp => ({ seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 });

function infoToProto(i: SnapshotInfo): Record<string, unknown> {
  return { name: i.name, parent: i.parent, kind: KIND_TO_PROTO[i.kind], created_at: ts(i.createdAt), updated_at: ts(i.updatedAt), labels: i.labels };
}

const mountsToProto = (ms: Mount[]): Record<string, unknown>[] => ms.map((m) => ({ type: m.type, source: m.source, target: '', options: m.options }));

function toStatus(err: unknown): Partial<grpc.StatusObject> {
  const code = errorCode(err) as SnapshotErrorCode | undefined;
  const message = err instanceof Error ? err.message : String(err);
  return { code: code !== undefined && code in STATUS ? STATUS[code] : grpc.status.UNKNOWN, details: message };
}

type Req = Record<string, unknown>;
const str = (v: unknown): string => (typeof v === 'string' ? v : '');
const labelsOf = (v: unknown): Record<string, string> => (typeof v === 'object' && v !== null ? { ...(v as Record<string, string>) } : {});

export interface ServiceOptions {
  logger?: SnapshotLogger & { debug?(obj: object, msg?: string): void };
}

/** The grpc-js handlers for one `Snapshotter`. */
export function snapshotsHandlers(snap: Snapshotter, opts: ServiceOptions = {}): grpc.UntypedServiceImplementation {
  const log = opts.logger;
  const unary = (method: string, fn: (req: Req) => Promise<unknown>) =>
    (call: grpc.ServerUnaryCall<Req, unknown>, cb: grpc.sendUnaryData<unknown>): void => {
      const ns = call.metadata.get('containerd-namespace')[0];
      log?.debug?.({ method, ns, req: call.request }, 'snapshots call');
      fn(call.request).then(
        (res) => cb(null, res),
        (err: unknown) => {
          const st = toStatus(err);
          if (st.code !== grpc.status.ALREADY_EXISTS && st.code !== grpc.status.NOT_FOUND) log?.warn({ method, ns, err: st.details }, 'snapshots call failed');
          cb(st as grpc.ServiceError);
        },
      );
    };
  return {
    Prepare: unary('Prepare', async (r) => ({ mounts: mountsToProto(await snap.prepare(str(r.key), str(r.parent), labelsOf(r.labels))) })),
    View: unary('View', async (r) => ({ mounts: mountsToProto(await snap.view(str(r.key), str(r.parent), labelsOf(r.labels))) })),
    Mounts: unary('Mounts', async (r) => ({ mounts: mountsToProto(await snap.mounts(str(r.key))) })),
    Commit: unary('Commit', async (r) => {
      await snap.commit(str(r.name), str(r.key), labelsOf(r.labels), str(r.parent));
      return {};
    }),
    Remove: unary('Remove', async (r) => {
      await snap.remove(str(r.key));
      return {};
    }),
    Stat: unary('Stat', async (r) => ({ info: infoToProto(await snap.stat(str(r.key))) })),
    Update: unary('Update', async (r) => {
      const info = (r.info ?? {}) as Req;
      const mask = (r.update_mask ?? {}) as { paths?: string[] };
      return { info: infoToProto(await snap.update({ name: str(info.name), labels: labelsOf(info.labels) }, mask.paths ?? [])) };
    }),
    Usage: unary('Usage', async (r) => {
      const u = await snap.usage(str(r.key));
      return { size: String(u.size), inodes: String(u.inodes) };
    }),
    Cleanup: unary('Cleanup', async () => {
      await snap.cleanup();
      return {};
    }),
    List: (call: grpc.ServerWritableStream<Req, unknown>): void => {
      const filters = Array.isArray(call.request.filters) ? (call.request.filters as string[]) : [];
      snap.list(filters).then(
        (infos) => {
          for (let i = 0; i < infos.length; i += 100) call.write({ info: infos.slice(i, i + 100).map(infoToProto) });
          call.end();
        },
        (err: unknown) => call.emit('error', toStatus(err)),
      );
    },
  };
}

export interface SnapshotsServer {
  address: string;
  close(): Promise<void>;
}

/** Serves `snap` on the unix socket `socketPath` (a stale socket file is replaced). */
export async function serveSnapshotter(snap: Snapshotter, socketPath: string, opts: ServiceOptions = {}): Promise<SnapshotsServer> {
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 16 << 20 });
  server.addService(await loadSnapshotsService(), snapshotsHandlers(snap, opts));
  await unlink(socketPath).catch(() => undefined);
  await new Promise<void>((resolve, reject) => {
    server.bindAsync(`unix://${socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve()));
  });
  return {
    address: socketPath,
    close: () =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(() => server.forceShutdown(), 5000);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
}
