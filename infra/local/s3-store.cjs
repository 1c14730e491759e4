// Local S3's object files, written as S3 keeps objects: whole or not at all, never changed in
// place. s3rver's filesystem store writes an object by truncating its file and streaming into it
// (a GET meanwhile reads half an object; a crash leaves one), and answers CopyObject by copying
// every byte, where S3 copies server-side without the client waiting on the data. Here a PUT
// (and a completed multipart upload, which s3rver turns into one) writes a temporary file beside
// the object and renames it over; so no object file is ever written again, and CopyObject can
// hard-link the source's file: staging a trainer's 512 MiB output is then a rename, not 512 MiB
// more on the disk. Patched onto s3rver's store (./storage-host.cjs loads this before s3rver
// serves); the rest of the store (metadata, listing, which skips files without its object
// suffix, so a temporary file left by a crash) is s3rver's.
const crypto = require('node:crypto');
const { Transform } = require('node:stream');
const path = require('node:path');
const fs = require('fs-extra');
const FilesystemStore = require('s3rver/lib/stores/filesystem');

const temporary = (objectPath) => `${objectPath}.${crypto.randomBytes(6).toString('hex')}.tmp`;

/** s3rver's putObject, writing to a temporary file renamed over the object once whole. */
async function putObject(object) {
  const objectPath = this.getResourcePath(object.bucket, object.key, 'object');
  await fs.mkdirp(path.dirname(objectPath));
  const tmp = temporary(objectPath);
  try {
    const [size, md5] = await new Promise((resolve, reject) => {
      const md5Context = crypto.createHash('md5');
      const writeStream = fs.createWriteStream(tmp);
      writeStream.on('error', reject);
      if (Buffer.isBuffer(object.content)) {
        md5Context.update(object.content);
        writeStream.end(object.content, () => resolve([object.content.length, md5Context.digest('hex')]));
        return;
      }
      let totalLength = 0;
      object.content
        .on('error', reject)
        .pipe(
          new Transform({
            transform(chunk, encoding, callback) {
              md5Context.update(chunk, encoding);
              totalLength += chunk.length;
              callback(null, chunk);
            },
          }),
        )
        .pipe(writeStream)
        .on('finish', () => resolve([totalLength, md5Context.digest('hex')]));
    });
    await fs.rename(tmp, objectPath);
    await this.putMetadata(object.bucket, object.key, object.metadata, md5);
    return { size, md5 };
  } catch (err) {
    await fs.remove(tmp);
    throw err;
  }
}

/** s3rver's copyObject, with the object's bytes shared through a hard link instead of copied. */
async function copyObject(srcBucket, srcKey, destBucket, destKey, replacementMetadata) {
  const src = this.getResourcePath(srcBucket, srcKey, 'object');
  const dest = this.getResourcePath(destBucket, destKey, 'object');
  if (src !== dest) {
    await fs.mkdirp(path.dirname(dest));
    const tmp = temporary(dest);
    try {
      await fs.link(src, tmp);
    } catch (err) {
      // Not one filesystem after all: the bytes are copied, as s3rver does.
      if (err.code !== 'EXDEV') throw err;
      await fs.copy(src, tmp);
    }
    await fs.rename(tmp, dest);
  }
  // The metadata as s3rver's copyObject treats it.
  if (replacementMetadata) {
    await this.putMetadata(destBucket, destKey, replacementMetadata);
  } else if (src !== dest) {
    await Promise.all(
      ['metadata.json', 'object.md5'].map((type) => fs.copy(this.getResourcePath(srcBucket, srcKey, type), this.getResourcePath(destBucket, destKey, type))),
    );
  }
  return this.getMetadata(destBucket, destKey);
}

FilesystemStore.prototype.putObject = putObject;
FilesystemStore.prototype.copyObject = copyObject;
