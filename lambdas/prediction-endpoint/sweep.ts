/**
 * The daily sweep: endpoints of this stack with no prediction for serving.delete_idle_days are
 * deleted, with their scaling, endpoint configuration and model (a later prediction makes them
 * again). An endpoint with no record of use counts from its last change.
 */
import { DeleteEndpointCommand, DeleteEndpointConfigCommand, DeleteModelCommand, type EndpointSummary, ListEndpointsCommand } from '@aws-sdk/client-sagemaker';
import type { Logger } from '#shared/log';
import { EndpointRecords } from '#shared/serving/endpoint-record';
import { isNotFound } from '#shared/serving/sagemaker-errors';
import type { EndpointDeps } from './core.ts';
import { tearDownScaling } from './scaling.ts';

export async function sweepEndpoints(d: EndpointDeps, log: Logger): Promise<{ deleted: string[]; kept: number }> {
  const records = new EndpointRecords(d.store);
  const cutoff = d.now().getTime() - d.config.serving.delete_idle_days * 86_400_000;
  const deleted: string[] = [];
  let kept = 0;
  for await (const e of ownEndpoints(d)) {
    const name = e.EndpointName!;
    const record = await records.get(name);
    const lastUse = record ? Date.parse(record.last_used_at) : (e.LastModifiedTime ?? e.CreationTime ?? d.now()).getTime();
    if (lastUse > cutoff || e.EndpointStatus === 'Deleting') {
      kept++;
      continue;
    }
    await deleteEndpoint(d, name);
    await records.delete(name);
    log.info('deleted an idle endpoint', { endpoint: name, last_used_at: new Date(lastUse).toISOString() });
    deleted.push(name);
  }
  return { deleted, kept };
}

/** ListEndpoints filters by a substring: the prefix must also start the name. */
async function* ownEndpoints(d: EndpointDeps): AsyncGenerator<EndpointSummary> {
  let token: string | undefined;
  do {
    const page = await d.sagemaker.send(new ListEndpointsCommand({ NameContains: d.serving.endpointPrefix, MaxResults: 100, NextToken: token }));
    for (const e of page.Endpoints ?? []) if (e.EndpointName?.startsWith(d.serving.endpointPrefix)) yield e;
    token = page.NextToken;
  } while (token);
}

async function deleteEndpoint(d: EndpointDeps, name: string): Promise<void> {
  // Each may be gone already (a sweep stopped half-way, or deleted by hand).
  const unlessGone = async (call: () => Promise<unknown>) => {
    try {
      await call();
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
  };
  await tearDownScaling(d, name);
  await unlessGone(() => d.sagemaker.send(new DeleteEndpointCommand({ EndpointName: name })));
  await unlessGone(() => d.sagemaker.send(new DeleteEndpointConfigCommand({ EndpointConfigName: name })));
  await unlessGone(() => d.sagemaker.send(new DeleteModelCommand({ ModelName: name })));
}
