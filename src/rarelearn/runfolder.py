"""The run-folder contract shared by the campaign (writer) and the report (reader)."""

#: Keys of one row of ``summary.json["iterations"]`` (and of ``iterations/NNN/metrics.json``),
#: in table order. Other tools rely on these names: change them only with the contract.
ROW_KEYS: tuple[str, ...] = (
    "iteration",
    "n_labels",
    "ea_nnp_eV",
    "ea_ref_eV",
    "ea_error_eV",
    "ea_error_kcal_mol",
    "breaking_distance_nnp_A",
    "mae_unseen_kcal_mol",
    "train_mae_kcal_mol",
    "val_mae_kcal_mol",
    "n_candidates",
    "n_selected",
    "n_augmented",
    "n_label_failures",
    "wall_s",
)
