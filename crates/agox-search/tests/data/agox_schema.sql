-- sqlite_master of a database written by AGOX 3.11.1 (agox.databases.Database),
-- SELECT type, name, sql FROM sqlite_master ORDER BY name; one entry per object.
-- table boolean_key_values
CREATE TABLE boolean_key_values (
    key TEXT,
    value INTEGER,
    id INTEGER,
    FOREIGN KEY (id) REFERENCES systems(id));
-- table float_key_values
CREATE TABLE float_key_values (
    key TEXT,
    value REAL,
    id INTEGER,
    FOREIGN KEY (id) REFERENCES systems(id));
-- table int_key_values
CREATE TABLE int_key_values (
    key TEXT,
    value INTEGER,
    id INTEGER,
    FOREIGN KEY (id) REFERENCES systems(id));
-- table other_key_values
CREATE TABLE other_key_values (
    key TEXT,
    value BLOB,
    id INTEGER,
    FOREIGN KEY (id) REFERENCES systems(id));
-- table sqlite_sequence
CREATE TABLE sqlite_sequence(name,seq);
-- table structures
CREATE TABLE structures (
    id integer primary key autoincrement,
    ctime real,
    positions blob,
    energy real,
    type blob,
    cell blob,
    forces blob, 
    pbc blob,
    template_indices blob,
    iteration int,
    cache_key text
    );
-- table text_key_values
CREATE TABLE text_key_values (
    key TEXT,
    value TEXT,
    id INTEGER,
    FOREIGN KEY (id) REFERENCES systems(id));
