/**
 * Custom search attributes KubeDos registers on the embedded server (and documents for external
 * clusters), so runs can be listed by fleet, image, target and phase.
 */
export const SEARCH_ATTRIBUTES = {
  KubedosFleet: 'Keyword',
  KubedosImage: 'Keyword',
  KubedosTarget: 'Keyword',
  KubedosPhase: 'Keyword',
} as const;
