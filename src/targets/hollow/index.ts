/** The `hollow` target type: scale testing, each node a tiny local process (no VM, no image bytes). */
import { z } from 'zod';
import { duration, name } from '../../platform/fields';
import type { DeepReadonly } from '../../platform/types';
import { defineTarget, type DriverFactory } from '../descriptor';

const schema = z
  .strictObject({
    type: z.literal('hollow'),
    bootDelay: duration().prefault('0s').describe('Simulated boot time of each node'),
    unhealthyImages: z
      .array(name('image name'))
      .default([])
      .describe('Fault injection: nodes of these images boot but never pass their health check (rollback drills)'),
  })
  .describe('Hollow nodes for scale tests: each node is a tiny local process');

/** A parsed `hollow` target. */
export type HollowTargetSpec = DeepReadonly<z.output<typeof schema>>;

export const hollow = defineTarget({
  type: 'hollow',
  description: 'Scale-testing driver: each node is a tiny local process, no VM',
  accepts: 'any',
  // Its nodes are processes of the host that runs the fleets' workflows.
  pool: 'control',
  tools: [],
  schema,
  load: async (): Promise<DriverFactory<HollowTargetSpec>> => {
    const { HollowDriver } = await import('./driver');
    return (targetName, spec, env) => new HollowDriver(targetName, spec, env);
  },
});
