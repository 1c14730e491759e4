/** Local IAM's policy evaluator on its own. */
import { describe, expect, it } from 'vitest';
import { evaluate, type Statement } from '#infra/local/iam/policy';

describe('policy evaluation', () => {
  const allow = (over: Partial<Statement>): Statement => ({ Effect: 'Allow', Action: '*', Resource: '*', ...over });
  const req = (action: string, resource: string, context = {}) => ({ action, resource, context });

  it('allows by Action and Resource wildcards, case-insensitively for actions only', () => {
    const s = [allow({ Action: 's3:Get*', Resource: 'arn:aws:s3:::b/staged/*' })];
    expect(evaluate(s, req('s3:GetObject', 'arn:aws:s3:::b/staged/x/output.zip'))).toBe('Allow');
    expect(evaluate(s, req('S3:getobject', 'arn:aws:s3:::b/staged/x'))).toBe('Allow');
    expect(evaluate(s, req('s3:GetObject', 'arn:aws:s3:::b/Staged/x'))).toBe('ImplicitDeny');
    expect(evaluate(s, req('s3:PutObject', 'arn:aws:s3:::b/staged/x'))).toBe('ImplicitDeny');
    expect(evaluate([allow({ Resource: 'arn:aws:s3:::b/??/x' })], req('s3:GetObject', 'arn:aws:s3:::b/ab/x'))).toBe('Allow');
  });

  it('lets an explicit Deny win, and reads NotAction and NotResource', () => {
    const s = [allow({}), { Effect: 'Deny' as const, NotAction: 's3:GetObject', NotResource: 'arn:aws:s3:::b/public/*' }];
    expect(evaluate(s, req('s3:PutObject', 'arn:aws:s3:::b/x'))).toBe('ExplicitDeny');
    expect(evaluate(s, req('s3:GetObject', 'arn:aws:s3:::b/x'))).toBe('Allow');
    expect(evaluate(s, req('s3:PutObject', 'arn:aws:s3:::b/public/x'))).toBe('Allow');
  });

  it('evaluates the condition operators, a missing key failing all but IfExists and negated ones', () => {
    const tls: Statement = { Effect: 'Deny', Action: 's3:*', Resource: '*', Condition: { Bool: { 'aws:SecureTransport': 'false' } } };
    expect(evaluate([allow({}), tls], req('s3:GetObject', 'x', { 'aws:SecureTransport': 'false' }))).toBe('ExplicitDeny');
    expect(evaluate([allow({}), tls], req('s3:GetObject', 'x', { 'aws:SecureTransport': 'true' }))).toBe('Allow');
    const prefix = allow({ Condition: { StringLike: { 's3:prefix': ['staged/*', 'uploads/'] } } });
    expect(evaluate([prefix], req('s3:ListBucket', 'b', { 's3:prefix': 'staged/x/' }))).toBe('Allow');
    expect(evaluate([prefix], req('s3:ListBucket', 'b', { 's3:prefix': 'other/' }))).toBe('ImplicitDeny');
    expect(evaluate([prefix], req('s3:ListBucket', 'b'))).toBe('ImplicitDeny');
    expect(evaluate([allow({ Condition: { StringLikeIfExists: { 's3:prefix': 'staged/*' } } })], req('s3:ListBucket', 'b'))).toBe('Allow');
    expect(evaluate([allow({ Condition: { StringNotEquals: { 'aws:SourceAccount': '1' } } })], req('a:b', 'r'))).toBe('Allow');
    expect(evaluate([allow({ Condition: { ArnLike: { 'aws:SourceArn': 'arn:aws:s3:::b*' } } })], req('a:b', 'r', { 'aws:SourceArn': 'arn:aws:s3:::bucket' }))).toBe('Allow');
    expect(evaluate([allow({ Condition: { Null: { 's3:prefix': 'true' } } })], req('a:b', 'r'))).toBe('Allow');
  });

  it('refuses to guess an operator it does not implement', () => {
    expect(() => evaluate([allow({ Condition: { DateGreaterThan: { 'aws:CurrentTime': '2020-01-01' } } })], req('a:b', 'r'))).toThrow(/DateGreaterThan/);
  });
});
