-- Every dead letter, kept as a bounded envelope (what the dead-letter topic holds whole, when
-- it can): the reason, where the record came from, its size, a hash and its first KiB.
-- Once per record: a batch read again after a crash does not add it twice.
CREATE TABLE dead_letters (
    id        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    topic     text        NOT NULL,
    partition integer,
    "offset"  bigint,
    key       text        NOT NULL,
    reason    text        NOT NULL,
    size      integer     NOT NULL,
    sha256    text        NOT NULL,
    head      text        NOT NULL,              -- the first KiB, as UTF-8 text
    traceback text                               -- for an event a bug kept from applying
);
CREATE UNIQUE INDEX dead_letters_once ON dead_letters (topic, partition, "offset");
CREATE INDEX dead_letters_by_time ON dead_letters (at DESC);
