// The VF's register file against the Linux uapi header <linux/virtio_pci.h>: a C program compiled
// by the system's gcc prints struct virtio_pci_common_cfg's offsets and widths and the
// VIRTIO_PCI_COMMON_* macros, and the test compares them with the example's layout.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as layout from '@mdev/example-vendor-vf';
import { afterAll, describe, expect, it } from 'vitest';

const source = fileURLToPath(new URL('./conformance/virtio_pci_uapi.c', import.meta.url));
const headers = ['/usr/include/linux/virtio_pci.h', '/usr/include/linux/virtio_net.h'];
const hasGcc = spawnSync('gcc', ['--version']).status === 0;
const missing = headers.filter((h) => !existsSync(h));
const skipReason = !hasGcc
  ? 'gcc is not installed (on Debian: apt-get install gcc)'
  : missing.length
    ? `the Linux uapi headers are missing (${missing.join(', ')}; on Debian: apt-get install linux-libc-dev)`
    : '';
if (skipReason) console.warn(`vendor-vf conformance tests skipped: ${skipReason}`);

const dir = mkdtempSync(join(tmpdir(), 'vendor-vf-uapi-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function probe(): Map<string, number> {
  const binary = join(dir, 'virtio_pci_uapi');
  execFileSync('gcc', ['-std=gnu11', '-Wall', '-o', binary, source]);
  const values = new Map<string, number>();
  for (const line of execFileSync(binary, { encoding: 'utf8' }).split('\n')) {
    const [k, v] = line.split(' ');
    if (k && v !== undefined) values.set(k, Number(v));
  }
  return values;
}

/** Our registers: [uapi field, our offset constant, width in bytes]. */
const fields: [string, number, number][] = [
  ['device_feature_select', layout.VIRTIO_PCI_COMMON_DFSELECT, 4],
  ['device_feature', layout.VIRTIO_PCI_COMMON_DF, 4],
  ['guest_feature_select', layout.VIRTIO_PCI_COMMON_GFSELECT, 4],
  ['guest_feature', layout.VIRTIO_PCI_COMMON_GF, 4],
  ['msix_config', layout.VIRTIO_PCI_COMMON_MSIX, 2],
  ['num_queues', layout.VIRTIO_PCI_COMMON_NUMQ, 2],
  ['device_status', layout.VIRTIO_PCI_COMMON_STATUS, 1],
  ['config_generation', layout.VIRTIO_PCI_COMMON_CFGGENERATION, 1],
  ['queue_select', layout.VIRTIO_PCI_COMMON_Q_SELECT, 2],
  ['queue_size', layout.VIRTIO_PCI_COMMON_Q_SIZE, 2],
  ['queue_msix_vector', layout.VIRTIO_PCI_COMMON_Q_MSIX, 2],
  ['queue_enable', layout.VIRTIO_PCI_COMMON_Q_ENABLE, 2],
  ['queue_notify_off', layout.VIRTIO_PCI_COMMON_Q_NOFF, 2],
  ['queue_desc_lo', layout.VIRTIO_PCI_COMMON_Q_DESCLO, 4],
  ['queue_desc_hi', layout.VIRTIO_PCI_COMMON_Q_DESCHI, 4],
  ['queue_avail_lo', layout.VIRTIO_PCI_COMMON_Q_AVAILLO, 4],
  ['queue_avail_hi', layout.VIRTIO_PCI_COMMON_Q_AVAILHI, 4],
  ['queue_used_lo', layout.VIRTIO_PCI_COMMON_Q_USEDLO, 4],
  ['queue_used_hi', layout.VIRTIO_PCI_COMMON_Q_USEDHI, 4],
];

describe.skipIf(skipReason !== '')('<linux/virtio_pci.h> conformance', () => {
  const values = skipReason ? new Map<string, number>() : probe();

  it('lays struct virtio_pci_common_cfg out at the same offsets and widths', () => {
    for (const [field, offset, width] of fields) {
      expect({ field, offset, width }).toEqual({
        field,
        offset: values.get(`offsetof_${field}`),
        width: values.get(`sizeof_${field}`),
      });
    }
    expect(layout.VIRTIO_PCI_COMMON_CFG_SIZE).toBe(values.get('sizeof_virtio_pci_common_cfg'));
  });

  it('agrees with every VIRTIO_PCI_COMMON_* macro and the MSI-X and ISR constants', () => {
    const ours = Object.entries(layout).filter(
      ([k, v]) =>
        typeof v === 'number' &&
        (k.startsWith('VIRTIO_PCI_COMMON_') || k === 'VIRTIO_MSI_NO_VECTOR') &&
        k !== 'VIRTIO_PCI_COMMON_CFG_SIZE',
    );
    expect(ours.length).toBe(20);
    for (const [name, value] of ours)
      expect({ name, value }).toEqual({ name, value: values.get(name) });
    expect(layout.VIRTIO_PCI_ISR_CONFIG).toBe(values.get('VIRTIO_PCI_ISR_CONFIG'));
  });

  it('implements struct virtio_net_config up to and including mtu', () => {
    expect(layout.VF_DEVICE_CFG_SIZE).toBe(values.get('virtio_net_config_end_of_mtu'));
  });
});

// The BAR's own layout needs no compiler: it runs wherever the tests do.
describe('the VF BAR layout', () => {
  it('keeps the common configuration inside its BAR window, ahead of the other areas', () => {
    const areas = [
      layout.VF_COMMON_CFG,
      layout.VF_ISR,
      layout.VF_DEVICE_CFG,
      layout.VF_NOTIFY,
      layout.VF_QUEUE_STATE,
      layout.VF_STATS,
    ];
    expect(layout.VF_COMMON_CFG + layout.VIRTIO_PCI_COMMON_CFG_SIZE).toBeLessThanOrEqual(
      layout.VF_ISR,
    );
    expect([...areas].sort((a, b) => a - b)).toEqual(areas);
    expect(layout.VF_STATS_COUNTERS + layout.VF_STAT_NAMES.length * 8).toBeLessThanOrEqual(
      layout.VF_BAR_SIZE,
    );
  });
});
