/** What a cattle node never runs: apt's self-upgrade timers and generators of unused features. */
import { MASKED_GENERATORS, MASKED_UNITS, renderPayload, type PayloadEntry } from '../../src/foundry/payload';
import { TEST_PLAN } from '../support/images';

const IDS = { inputDigest: '0'.repeat(64), rootFsUuid: '00000000-0000-0000-0000-000000000000' };
const links = (entries: PayloadEntry[]) => new Map(entries.flatMap((e) => (e.kind === 'symlink' ? [[e.path, e.target] as const] : [])));

test('apt never upgrades a node in place and the unused generators are masked', () => {
  const masked = links(renderPayload(TEST_PLAN, IDS));
  for (const u of MASKED_UNITS) expect(masked.get(`/etc/systemd/system/${u}`)).toBe('/dev/null');
  for (const g of MASKED_GENERATORS) expect(masked.get(`/etc/systemd/system-generators/${g}`)).toBe('/dev/null');
  // What a node does need stays: fstab mounts the root, getty serves the console.
  expect(masked.has('/etc/systemd/system-generators/systemd-fstab-generator')).toBe(false);
  expect(masked.has('/etc/systemd/system-generators/systemd-getty-generator')).toBe(false);
});

test("a plan's own unit of a masked name replaces the mask", () => {
  const timer = '[Unit]\nDescription=mine\n[Timer]\nOnCalendar=daily\n';
  const plan = { ...TEST_PLAN, image: { ...TEST_PLAN.image, units: [...TEST_PLAN.image.units, { name: 'apt-daily.timer', content: timer, enable: false }] } };
  const entries = renderPayload(plan, IDS);
  expect(links(entries).has('/etc/systemd/system/apt-daily.timer')).toBe(false);
  expect(entries.filter((e) => e.path === '/etc/systemd/system/apt-daily.timer')).toEqual([expect.objectContaining({ kind: 'file' })]);
});
