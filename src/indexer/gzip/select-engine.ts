/**
 * Picks the gzip engine: `'native'` (the N-API addon; an error if it is not built), `'js'` (pako), or
 * `'auto'` (native when build/Release/soci_gzip.node loads, else js). The choice is an option passed
 * down from the composition root; nothing here reads the environment.
 */
import type { EngineChoice, GzipEngine } from './engine.js';
import { jsEngine } from './js-engine.js';
import { loadNativeEngine } from './native-engine.js';

export function selectGzipEngine(choice: EngineChoice = 'auto'): GzipEngine {
  if (choice === 'js') return jsEngine;
  const native = loadNativeEngine();
  if (native) return native;
  if (choice === 'native') throw new Error('native gzip engine requested but build/Release/soci_gzip.node is not available (run npm run build:native)');
  return jsEngine;
}

/** Whether the native addon loads in this process. */
export function nativeEngineAvailable(): boolean {
  return loadNativeEngine() !== undefined;
}
