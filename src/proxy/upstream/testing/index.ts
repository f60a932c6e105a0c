/**
 * Test helpers for the upstream client (and anyone testing against real upstreams): a real docker-registry
 * (anonymous, htpasswd, token auth, TLS), a Docker token service, self-signed certs, a fake HTTP server
 * that records connections, and a small pushed test image.
 */
export { htpasswdLine, makeSelfSignedCert, type TestCert } from './certs.js';
export { startFakeServer, type FakeServer } from './fake-server.js';
export { pushTestImage, type PushedImage } from './fixtures.js';
export { freePort, startRegistry, type RegistryOptions, type TestRegistry } from './registry.js';
export { startTokenService, type TokenRequestRecord, type TokenService, type TokenServiceOptions } from './token-service.js';
