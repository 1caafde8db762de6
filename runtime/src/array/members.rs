//! The leg lifecycle, online: fail, remove, add a spare, replace, re-add.
//! Rebuilds run in the background (see `sync`) while I/O goes on.

use super::health::Health;
use super::sync::{RecoverScope, SyncAction};
use super::{Array, ArrayError};
use crate::device::BlockDevice;
use crate::device::missing::Missing;
use crate::meta::store;
use crate::meta::superblock::new_uuid;
use std::sync::Arc;

impl Array {
    fn meta_or_refuse(&self) -> Result<&super::Meta, ArrayError> {
        self.meta.as_ref().ok_or_else(|| ArrayError::Refused(format!("{} has no metadata (create it with `wasmraid create`)", self.name)))
    }

    /// Write a leg's superblock, component and bitmap onto `dev` for slot
    /// `index` with identity `uuid`.
    fn write_leg_metadata(&self, dev: &dyn BlockDevice, index: usize, uuid: [u8; 16]) -> Result<(), ArrayError> {
        let meta = self.meta_or_refuse()?;
        let mut sb = meta.template.lock().clone();
        let needed = sb.data_offset + sb.leg_sizes.get(index).copied().unwrap_or(sb.leg_chunks) * self.chunk_bytes;
        if dev.size() < needed {
            return Err(ArrayError::Refused(format!("{} holds {} bytes; slot {index} needs {needed}", dev.describe(), dev.size())));
        }
        sb.leg_index = index as u32;
        sb.leg_uuid = uuid;
        let fail = |e: crate::meta::store::MetaError| ArrayError::Refused(e.to_string());
        store::write_component(dev, &sb, &meta.component).map_err(fail)?;
        let (states, serial) = (meta.intent.states(), meta.intent.serial());
        for which in [0, 1] {
            store::write_bitmap_copy(dev, &sb, which, &states, serial).map_err(fail)?;
        }
        store::write_superblock(dev, &sb).map_err(fail)
    }

    /// `leg remove`: detach a dead leg; its slot stays empty.
    pub fn leg_remove(&self, i: usize) -> Result<(), ArrayError> {
        let _change = self.membership.lock();
        let leg = self.legs.get(i).ok_or_else(|| ArrayError::Refused(format!("no leg {i}")))?;
        if leg.health() != Health::Dead {
            return Err(ArrayError::Refused(format!("leg {i} is in use: fail it first")));
        }
        let what = leg.device().describe();
        leg.set_device(Arc::new(Missing { what: format!("removed {what}") }));
        *leg.uuid.lock() = [0; 16];
        self.write_superblocks(None)
    }

    /// `leg add`: put a new device (a spare) into slot `i`, or the first
    /// dead slot, and rebuild it in full.
    pub fn leg_add(self: &Arc<Self>, i: Option<usize>, dev: Arc<dyn BlockDevice>) -> Result<usize, ArrayError> {
        let _change = self.membership.lock();
        let slot = match i {
            Some(i) => i,
            None => {
                self.legs.iter().position(|l| l.health() == Health::Dead).ok_or_else(|| ArrayError::Refused("no dead or empty slot to add a leg to".into()))?
            }
        };
        let leg = self.legs.get(slot).ok_or_else(|| ArrayError::Refused(format!("no slot {slot}")))?;
        if leg.health() != Health::Dead {
            return Err(ArrayError::Refused(format!("slot {slot} holds a live leg: use `leg replace`")));
        }
        if self.sync.action() != SyncAction::Idle {
            return Err(ArrayError::Refused(format!("a {} is running; add the leg when it ends", self.sync.action().name())));
        }
        let uuid = new_uuid();
        self.write_leg_metadata(&*dev, slot, uuid)?;
        self.retire_spare(slot as u32)?;
        leg.set_device(dev);
        *leg.uuid.lock() = uuid;
        leg.start_recovery(0, false);
        self.write_superblocks(None)?;
        self.start_sync(SyncAction::Recover, Some((slot, RecoverScope::Full)))?;
        Ok(slot)
    }

    /// `leg re-add`: a leg that left comes back. If it is fresh enough for
    /// the bitmap to know what it missed, only those regions are rebuilt.
    pub fn leg_readd(self: &Arc<Self>, dev: Arc<dyn BlockDevice>) -> Result<(usize, RecoverScope), ArrayError> {
        let _change = self.membership.lock();
        let meta = self.meta_or_refuse()?;
        let sb = store::read_superblock(&*dev).map_err(|e| ArrayError::Refused(e.to_string()))?;
        let template = meta.template.lock().clone();
        if sb.array_uuid != template.array_uuid {
            return Err(ArrayError::Refused(format!("{} belongs to another array ({})", dev.describe(), crate::meta::superblock::uuid_text(&sb.array_uuid))));
        }
        let slot = sb.leg_index as usize;
        let leg = self.legs.get(slot).ok_or_else(|| ArrayError::Refused(format!("no slot {slot}")))?;
        if leg.health() != Health::Dead {
            return Err(ArrayError::Refused(format!("slot {slot} is not dead; nothing to re-add")));
        }
        if template.legs.get(slot).is_some_and(|u| *u != sb.leg_uuid && *u != [0; 16]) {
            return Err(ArrayError::Refused(format!("slot {slot} was given to another leg since {} left", dev.describe())));
        }
        if self.sync.action() != SyncAction::Idle {
            return Err(ArrayError::Refused(format!("a {} is running; re-add the leg when it ends", self.sync.action().name())));
        }
        let scope = if sb.generation >= template.events_cleared { RecoverScope::Bitmap } else { RecoverScope::Full };
        self.retire_spare(slot as u32)?;
        leg.set_device(dev);
        *leg.uuid.lock() = sb.leg_uuid;
        leg.start_recovery(0, scope == RecoverScope::Bitmap);
        self.write_superblocks(None)?;
        self.start_sync(SyncAction::Recover, Some((slot, scope)))?;
        Ok((slot, scope))
    }

    /// `leg replace`: rebuild a new device to take a live leg's place
    /// while that leg keeps serving; it is swapped in when complete.
    pub fn leg_replace(self: &Arc<Self>, i: usize, dev: Arc<dyn BlockDevice>) -> Result<(), ArrayError> {
        let leg = self.legs.get(i).ok_or_else(|| ArrayError::Refused(format!("no leg {i}")))?;
        if leg.health() == Health::Dead {
            return self.leg_add(Some(i), dev).map(|_| ());
        }
        let _change = self.membership.lock();
        if self.sync.action() != SyncAction::Idle {
            return Err(ArrayError::Refused(format!("a {} is running; replace the leg when it ends", self.sync.action().name())));
        }
        if self.legs.iter().any(|l| l.replacement().is_some()) {
            return Err(ArrayError::Refused("a replacement is already under way".into()));
        }
        let uuid = new_uuid();
        self.write_leg_metadata(&*dev, i, uuid)?;
        *leg.replacement_uuid.lock() = uuid;
        leg.replacement_offset.store(0, std::sync::atomic::Ordering::Release);
        leg.set_replacement(Some(dev));
        self.write_superblocks(None)?;
        self.start_sync(SyncAction::Recover, Some((i, RecoverScope::Full)))
    }
}
