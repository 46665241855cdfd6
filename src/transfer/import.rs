//! Whole databases in: a plain SQLite file made the content of a database in one commit
//! (retried when another writer wins), or written as a new file of the sqlite-s3vfs layout.

use super::*;

/// Writes a new file of the sqlite-s3vfs layout. That layout has no atomic commit, so an
/// existing database is never overwritten: the target name must be empty.
pub(super) fn load_legacy(
    target: &Database,
    input: &mut dyn Read,
    image: Image,
    overwrite: Overwrite,
    name: &str,
) -> Result<u64> {
    let url = target.location.url();
    if overwrite == Overwrite::Replace {
        return Err(Error::Invalid(format!(
            "'replace' is refused for {url}: layout=sqlite-s3vfs overwrites in place without an \
             atomic commit, so s3vfs only writes such a database into an empty name"
        )));
    }
    let (backend, prefix) = (target.backend(), target.location.prefix.clone());
    let block_size = target.latest().block_size;
    let mut file = runtime::block_on(async move {
        NewFile::create(backend, &prefix, block_size)
            .await
            .map_err(|error| match error {
                Error::Format(why) => Error::Invalid(format!("{why}; nothing was written")),
                other => other,
            })
    })?;
    let mut remaining = image.size;
    while remaining > 0 {
        let chunk = read_block(input, remaining.min(1 << 20), name)?;
        remaining -= chunk.len() as u64;
        file = runtime::block_on(async move { file.write(&chunk).await.map(|()| file) })?;
    }
    runtime::block_on(async move { file.finish().await })
}

/// SQLite keeps its page cache while the 16 bytes at 24..40 of the header are unchanged, so a
/// new content must not carry the same bytes as the version it replaces: when they are equal,
/// the change counter (and the "version valid for" that mirrors it) is moved on by one.
pub(super) fn distinct_header(block0: &Bytes, current: Option<&Bytes>) -> Bytes {
    let same = match current {
        Some(current)
            if current.len() >= SQLITE_HEADER_LEN && block0.len() >= SQLITE_HEADER_LEN =>
        {
            current[CHANGE_COUNTER..CHANGE_COUNTER + 16]
                == block0[CHANGE_COUNTER..CHANGE_COUNTER + 16]
        }
        _ => false,
    };
    if !same {
        return block0.clone();
    }
    let mut header = block0.to_vec();
    let counter = read_u32(&header, CHANGE_COUNTER);
    let mirrored = read_u32(&header, VERSION_VALID_FOR) == counter;
    set_change_counter(&mut header, counter.wrapping_add(1), mirrored);
    Bytes::from(header)
}

pub(super) fn check_target(
    database: &Database,
    parent: &Snapshot,
    overwrite: Overwrite,
) -> Result<()> {
    if overwrite == Overwrite::Refuse && parent.size > 0 {
        return Err(Error::Invalid(format!(
            "{} already holds a database (version {}, {} bytes); pass 'replace' as the third \
             argument to overwrite it",
            database.location.url(),
            parent.version.0,
            parent.size
        )));
    }
    Ok(())
}

pub(super) fn read_block(input: &mut dyn Read, len: u64, name: &str) -> Result<Bytes> {
    let mut data = vec![0u8; len as usize];
    input
        .read_exact(&mut data)
        .map_err(|error| match error.kind() {
            ErrorKind::UnexpectedEof => invalid(name, "ended early: it is shorter than its size"),
            _ => invalid(name, format_args!("cannot be read: {error}")),
        })?;
    Ok(Bytes::from(data))
}

/// Makes the SQLite file read from `input` (described by `image`) the content of `database`,
/// as one new version. Blocks are uploaded while the input is read; nothing is visible until
/// the commit record is created, and every block of the new version is one of this upload,
/// so no block of an older, larger database survives in it.
pub fn deserialize(
    database: &Database,
    input: &mut dyn Read,
    image: Image,
    overwrite: Overwrite,
    name: &str,
) -> Result<Arc<Snapshot>> {
    database.check_conditional_writes()?;
    let (mut parent, mut checked) = database.refresh_checked(Duration::ZERO)?;
    check_target(database, &parent, overwrite)?;
    let block_size: BlockSize = parent.block_size;
    if let Some(page_size) = image.page_size {
        if u64::from(page_size) > block_size.bytes() {
            return Err(invalid(
                name,
                format_args!(
                    "has {page_size}-byte pages, which do not fit the {}-byte blocks of {}: each \
                     page would span several objects; use a database with block_size={page_size} \
                     or larger",
                    block_size.bytes(),
                    database.location.url()
                ),
            ));
        }
    }
    let txid = TxId::random();
    let codec = parent.codec;
    let count = block_size.block_count(image.size);
    let mut block0 = None;
    let first_upload = (count > 1).then(Instant::now);
    let mut uploads: VecDeque<JoinHandle<Result<()>>> = VecDeque::new();
    let mut sums = BTreeMap::new();
    // The interior pages of the new version, for the interior-page index of its checkpoint.
    let mut held = image.page_size.map(InteriorPages::new);
    for index in (0..count).map(BlockIndex) {
        let data = read_block(input, block_size.block_len(index, image.size), name)?;
        sums.insert(index, checksum(&data));
        if let (Some(held), true) = (held.as_mut(), index.0 > 0) {
            held.scan(index, txid, &data, block_size);
        }
        if index.0 == 0 {
            // Block 0 carries the header, settled against the parent at commit time.
            block0 = Some(data);
            continue;
        }
        if uploads.len() as u64 >= window_blocks(block_size) {
            if let Some(oldest) = uploads.pop_front() {
                join(oldest)?;
            }
        }
        let (backend, location) = (database.backend(), database.location.clone());
        uploads.push_back(spawn(async move {
            log::upload_blocks(&backend, &location, codec, txid, vec![(index, data)]).await
        })?);
    }
    while let Some(upload) = uploads.pop_front() {
        join(upload)?;
    }
    let mut attempt = 1;
    loop {
        let current = match (&block0, parent.block_ref(BlockIndex(0))) {
            (Some(_), Some(entry)) => database
                .read_blocks(&[(
                    BlockIndex(0),
                    entry.clone(),
                    parent.block_len(BlockIndex(0)),
                )])?
                .pop(),
            _ => None,
        };
        let upload = block0
            .as_ref()
            .map(|block0| vec![(BlockIndex(0), distinct_header(block0, current.as_ref()))])
            .unwrap_or_default();
        let mut interior = held.clone();
        if let (Some(interior), Some((index, data))) = (interior.as_mut(), upload.first()) {
            interior.scan(*index, txid, data, block_size);
        }
        let mut transaction = Transaction::new(parent.clone(), txid, image.size, checked);
        transaction.upload = upload;
        transaction.interior = interior;
        // Every block is new: its checkpoint starts the map, and the index, afresh.
        transaction.checkpoint = true;
        transaction.uploaded = sums.clone();
        transaction.uploaded.remove(&BlockIndex(0));
        transaction.first_upload = first_upload;
        let (backend, location) = (database.backend(), database.location.clone());
        let started = Instant::now();
        let records = database.patch_cache();
        match runtime::block_on(log::commit(backend, location, transaction, records)) {
            Ok(snapshot) => {
                database.published(snapshot.clone(), started);
                return Ok(snapshot);
            }
            Err(Error::Conflict { .. }) if attempt < COMMIT_ATTEMPTS => {
                attempt += 1;
                (parent, checked) = database.refresh_checked(Duration::ZERO)?;
                check_target(database, &parent, overwrite)?;
                if parent.block_size != block_size || parent.codec != codec {
                    return Err(Error::Invalid(format!(
                        "{} was created meanwhile with block_size={} and compression={}; nothing \
                         was changed, retry",
                        database.location.url(),
                        parent.block_size.bytes(),
                        parent.codec
                    )));
                }
            }
            Err(error) => return Err(error),
        }
    }
}
