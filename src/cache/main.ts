/**
 * Composition root of `soci-proxy cache stats|gc`: opens the on-disk cache (and Redis when given) the
 * way `serve` does and prints its usage, or evicts least-recently-used artifacts down to a bound.
 */
import { parseArgs } from 'node:util';
import { DiskBlobStore } from './disk-store.js';
import { cacheGc, cacheStats } from './admin.js';
import { parseByteSize } from '../oci/units.js';

function parseBytes(raw: string): number {
  const n = parseByteSize(raw);
  if (n === undefined) throw new Error(`invalid --max-bytes ${JSON.stringify(raw)} (e.g. 5GiB)`);
  return n;
}

export async function cacheMain(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const [sub, ...rest] = argv;
  const { values } = parseArgs({ args: rest, options: { 'cache-dir': { type: 'string' }, 'max-bytes': { type: 'string' }, json: { type: 'boolean' } } });
  const dir = values['cache-dir'] ?? env.SOCI_PROXY_CACHE_DIR ?? './.soci-proxy-cache';
  const store = await DiskBlobStore.open({ root: dir });
  if (sub === 'stats') {
    const r = await cacheStats(store);
    process.stdout.write(values.json ? `${JSON.stringify(r.stats, null, 2)}\n` : `${dir}\n${r.lines.join('\n')}\n`);
    return 0;
  }
  if (sub === 'gc') {
    const r = await cacheGc(store, values['max-bytes'] !== undefined ? parseBytes(values['max-bytes']) : undefined);
    process.stdout.write(`removed ${r.removed} artifacts, freed ${r.freedBytes} bytes, ${r.remainingBytes} bytes remain\n`);
    return 0;
  }
  throw new Error('usage: soci-proxy cache stats|gc [--cache-dir DIR] [--max-bytes N] [--json]');
}
