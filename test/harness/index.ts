/**
 * The shared test harness: real daemons (docker-registry, redis-server, containerd, the proxy CLI) on
 * loopback and free ports with their own state dirs, stopped by PID; offline-built test images in OCI
 * layouts and ways to push them. Integration tests and benchmarks import from here only.
 */
export { freePort, canConnect } from './ports.js';
export { onProcessExit, tempDir, pidGone } from './cleanup.js';
export { startDaemon, runCommand, type Daemon, type DaemonOptions, type Readiness, type RunResult, type RunOptions, type ExitInfo } from './process.js';
export { startRegistry, parseAccessLog, bcryptHash, type Registry, type RegistryOptions, type AccessLogEntry } from './registry.js';
export { startRedis, redisCommand, type Redis } from './redis.js';
export { startContainerd, mountsUnder, type Containerd, type ContainerdOptions } from './containerd.js';
export { startProxy, type Proxy, type ProxyOptions } from './proxy.js';
export { writeTar, type TarEntry, type TarOptions } from './tar-writer.js';
export { initLayout, writeBlob, readBlob, tagLayout, resolveTag, writeIndex, REF_NAME } from './oci-layout.js';
export {
  buildImage,
  buildLayer,
  buildIndex,
  buildImageWithUmoci,
  loadImage,
  pushImage,
  skopeoPush,
  inspectRaw,
  type BuiltImage,
  type BuiltIndex,
  type BuiltLayer,
  type LayerSpec,
  type FileSpec,
  type ConfigSpec,
  type Compression,
  type PushOptions,
} from './images.js';
export { pushExact, type ExactPushOptions } from './push.js';
export { smallImage, mixedImage, multiPlatformImage, pythonImage, randomBytes, textBytes, type MixedImage } from './fixtures.js';
export { hostBinariesRootfs, debianRootfs, hasDebootstrap, FIXTURE_CACHE } from './rootfs.js';
export { containerdFuseSkip } from './capabilities.js';
