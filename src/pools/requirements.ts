/**
 * What a pool's host must have, derived from the plug-ins the pool runs: the pool's own tools,
 * plus every output format's (build) or every target type's (the pools that deploy). Not
 * workflow-safe (it loads the registries); workflows use ./pools.ts.
 */
import { OUTPUT_FORMATS } from '../foundry/formats';
import { targetsOfPool } from '../targets';
import { POOLS, type PoolName } from './pools';

/** One plug-in a pool runs and what it needs there. */
export interface PluginRequirement {
  kind: 'format' | 'target';
  name: string;
  tools: readonly string[];
  files: readonly string[];
}

export interface PoolRequirements {
  /** Every executable the pool needs (its own and its plug-ins'), deduplicated. */
  tools: string[];
  files: string[];
  plugins: PluginRequirement[];
}

/** The plug-ins a pool runs: the formats for build, the target types routed to it for the others. */
export function pluginsOfPool(pool: PoolName): PluginRequirement[] {
  if (pool === 'build') return OUTPUT_FORMATS.map((f) => ({ kind: 'format', name: f.name, tools: f.tools, files: [] }));
  return targetsOfPool(pool).map((t) => ({ kind: 'target', name: t.type, tools: t.tools, files: t.files ?? [] }));
}

export function poolRequirements(pool: PoolName): PoolRequirements {
  const plugins = pluginsOfPool(pool);
  const unique = (lists: readonly (readonly string[])[]) => [...new Set(lists.flat())];
  return {
    tools: unique([POOLS[pool].tools, ...plugins.map((p) => p.tools)]),
    files: unique([POOLS[pool].files, ...plugins.map((p) => p.files)]),
    plugins,
  };
}
