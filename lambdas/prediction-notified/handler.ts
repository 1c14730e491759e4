import type { Context } from 'aws-lambda';
import { sfn } from '#shared/aws';
import { baseDeps, once } from '#shared/deps';
import { logger } from '#shared/log';
import { SnsEvent } from '#shared/serving/notification';
import { onNotifications } from './core.ts';

const deps = once(() => ({ ...baseDeps(), sfn: sfn() }));

export const handler = async (event: unknown, context?: Context) => onNotifications(deps(), SnsEvent.parse(event), logger('prediction-notified', {}, context));
