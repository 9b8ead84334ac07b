"""Attachments: files uploaded once (multipart), stored in GridFS, sent in messages by id,
downloaded by the uploader and the members of conversations they were sent in."""
