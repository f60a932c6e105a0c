/**
 * Test-time key material: a self-signed RSA certificate for 127.0.0.1 made with the `openssl` CLI in a temp
 * dir (used as the registry's token `rootcertbundle` and as a TLS server cert), and a bcrypt htpasswd line
 * made with python3's `crypt` (libxcrypt supports `$2b$`; apache2-utils' htpasswd is not installed).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface TestCert {
  certFile: string;
  keyFile: string;
  certPem: string;
  keyPem: string;
  /** base64 DER of the certificate, for a JWT `x5c` header. */
  derBase64: string;
}

export function makeSelfSignedCert(dir: string, name = 'test'): TestCert {
  const certFile = join(dir, `${name}.crt`);
  const keyFile = join(dir, `${name}.key`);
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '2',
    '-keyout', keyFile, '-out', certFile, '-subj', `/CN=${name}`,
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
  ], { stdio: 'pipe' });
  const certPem = readFileSync(certFile, 'utf8');
  const keyPem = readFileSync(keyFile, 'utf8');
  const derBase64 = certPem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, '');
  return { certFile, keyFile, certPem, keyPem, derBase64 };
}

/** One htpasswd line `user:$2b$04$…` (bcrypt cost 4: fast, still what docker-registry requires). */
export function htpasswdLine(user: string, password: string): string {
  const script = 'import crypt,sys,warnings\nwarnings.simplefilter("ignore")\nprint(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))';
  const hash = execFileSync('python3', ['-W', 'ignore', '-c', script, password], { encoding: 'utf8' }).trim();
  if (!hash.startsWith('$2')) throw new Error('python3 crypt produced no bcrypt hash');
  return `${user}:${hash}`;
}
