import {
  AzureInvalidRequestError,
  AzurePermissionError,
  AzureProvisioningError,
  AzureQuotaError,
  AzureRequestError,
  AzureResourceNotOwnedError,
  AzureThrottledError,
  AzureUnavailableError,
  CloudRequestError,
  CloudResourceNotOwnedError,
  GcpInvalidRequestError,
  GcpPermissionError,
  GcpQuotaError,
  GcpRequestError,
  GcpResourceNotOwnedError,
  GcpThrottledError,
  GcpUnavailableError,
} from '../../src/errors';

// The two providers' error classes share their bases; each keeps its own name (the failure type) and retryability.
test.each([
  [AzureThrottledError, AzureRequestError, true],
  [AzureQuotaError, AzureRequestError, true],
  [AzureUnavailableError, AzureRequestError, true],
  [AzurePermissionError, AzureRequestError, false],
  [AzureProvisioningError, AzureRequestError, false],
  [GcpThrottledError, GcpRequestError, true],
  [GcpQuotaError, GcpRequestError, true],
  [GcpUnavailableError, GcpRequestError, true],
  [GcpPermissionError, GcpRequestError, false],
])('%p is a %p, retryable %p', (Class, Parent, retryable) => {
  const err = new Class('t', 'create VM web-0001', 'SomeCode', 409, 'went wrong', 'do this');
  expect(err).toBeInstanceOf(Parent);
  expect(err).toBeInstanceOf(CloudRequestError);
  expect(err.name).toBe(Class.name);
  expect(err.retryable).toBe(retryable);
  expect(err.message).toBe('target t: create VM web-0001: SomeCode: went wrong');
  expect([err.target, err.operation, err.code, err.status, err.hint]).toEqual(['t', 'create VM web-0001', 'SomeCode', 409, 'do this']);
});

test.each([AzureInvalidRequestError, GcpInvalidRequestError])('%p carries the field to fix and is not retryable', (Class) => {
  const err = new Class('t', 'op', 'InvalidParameter', 400, 'bad size', 'size', 'fix size');
  expect(err.field).toBe('size');
  expect(err.retryable).toBe(false);
  expect(err.name).toBe(Class.name);
});

test.each([
  [AzureResourceNotOwnedError, 'tags', /tagged \(kubedos-node\)/],
  [GcpResourceNotOwnedError, 'labels', /labelled \(kubedos=node\)/],
])('%p names the resource and the marks it lacks', (Class, marks, hint) => {
  const err = new Class('t', 'instances/web-0001', 'web-0001');
  expect(err).toBeInstanceOf(CloudResourceNotOwnedError);
  expect(err.name).toBe(Class.name);
  expect(err.retryable).toBe(false);
  expect(err.message).toBe(`target t: instances/web-0001 exists but carries no KubeDos ${marks} for node web-0001; refusing to touch it`);
  expect(err.hint).toMatch(hint);
  expect([err.target, err.resource, err.nodeId]).toEqual(['t', 'instances/web-0001', 'web-0001']);
});
