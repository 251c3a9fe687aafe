/** Typed keys of the custom search attributes (registered by the embedded stack). */
import { defineSearchAttributeKey, SearchAttributeType, type SearchAttributePair } from '@temporalio/common';

export const FLEET = defineSearchAttributeKey('KubedosFleet', SearchAttributeType.KEYWORD);
export const IMAGE = defineSearchAttributeKey('KubedosImage', SearchAttributeType.KEYWORD);
export const TARGET = defineSearchAttributeKey('KubedosTarget', SearchAttributeType.KEYWORD);
export const PHASE = defineSearchAttributeKey('KubedosPhase', SearchAttributeType.KEYWORD);

export function fleetAttributes(fleet: string, image: string, target: string, phase?: string): SearchAttributePair[] {
  const pairs: SearchAttributePair[] = [
    { key: FLEET, value: fleet },
    { key: IMAGE, value: image },
    { key: TARGET, value: target },
  ];
  if (phase) pairs.push({ key: PHASE, value: phase });
  return pairs;
}
