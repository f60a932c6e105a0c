/**
 * The containerd remote-snapshotter front end: the Snapshots gRPC service (`serveSnapshotter`), the
 * transport-free snapshot state machine (`Snapshotter`) over a crash-safe `MetadataStore`, the plugin's
 * config and registry routing. The only folder that imports @grpc/grpc-js.
 */
export { Snapshotter, type Mount, type SnapshotInfo, type SnapshotLogger, type SnapshotterOptions, type Usage } from './snapshotter.js';
export { MetadataStore, type SnapshotRecord, type SnapshotKind, type RemoteSource, type LoadProblem } from './metadata-store.js';
export { SnapshotError, type SnapshotErrorCode } from './snapshot-error.js';
export { compileFilters, type Filter, type FilterFields } from './filters.js';
export { serveSnapshotter, snapshotsHandlers, loadSnapshotsService, type SnapshotsServer, type ServiceOptions } from './grpc-service.js';
export { linuxHostMounts, type HostMounts } from './host-mounts.js';
export { parseSnapshotterConfig, routeFor, DEFAULT_CONFIG, type SnapshotterConfig, type RegistryHostConfig, type HostRoute } from './config.js';
export { RoutedProvider } from './routed-provider.js';
export * from './labels.js';
