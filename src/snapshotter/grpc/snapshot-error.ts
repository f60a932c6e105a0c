/**
 * The snapshotter's error class with stable codes, one per containerd `errdefs` class the Snapshots API
 * uses (../shared/spec/containerd-integration.md §1.7). The snapshot state machine throws these; only the
 * gRPC adapter (`grpc-service.ts`) turns a code into a gRPC status. Match on `.code`.
 */
export type SnapshotErrorCode = 'NOT_FOUND' | 'ALREADY_EXISTS' | 'FAILED_PRECONDITION' | 'INVALID_ARGUMENT' | 'UNAVAILABLE';

export class SnapshotError extends Error {
  readonly code: SnapshotErrorCode;
  constructor(code: SnapshotErrorCode, message: string, opts: { cause?: unknown } = {}) {
    super(message, { cause: opts.cause });
    this.name = 'SnapshotError';
    this.code = code;
  }
}

export const notFound = (what: string): SnapshotError => new SnapshotError('NOT_FOUND', `${what}: not found`);
export const alreadyExists = (what: string): SnapshotError => new SnapshotError('ALREADY_EXISTS', `${what}: already exists`);
