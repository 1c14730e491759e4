/** A one-state machine whose only Task waits for a callback task token (5 minutes at most). */
export function waitingMachine(state: string, functionName: string) {
  return {
    StartAt: state,
    States: {
      [state]: {
        Type: 'Task',
        Resource: 'arn:aws:states:::lambda:invoke.waitForTaskToken',
        Parameters: { FunctionName: functionName, Payload: { 'task_token.$': '$$.Task.Token' } },
        TimeoutSeconds: 300,
        End: true,
      },
    },
  };
}
