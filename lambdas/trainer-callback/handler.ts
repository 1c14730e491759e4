// Placeholder while the handler is written; replaced in the same session.
export const handler = async (): Promise<never> => {
  throw new Error('not implemented yet');
};
