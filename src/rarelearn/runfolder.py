"""The run-folder contract shared by the campaign (writer) and the report (reader)."""

#: Keys of one row of ``summary.json["iterations"]`` (and of ``iterations/NNN/metrics.json``),
#: in table order. Other tools rely on these names: change them only with the contract.
#: The Ea keys are replica statistics: ``ea_nnp_eV`` and ``ea_ref_eV`` are means over pulls
#: from the reference replicas' start states, ``ea_error_eV`` is |mean difference| with the
#: Welch 95 % half-width ``ea_error_ci95_eV``; ``ea_error_single_eV`` is the paper's
#: single-pull error (replica 0 against replica 0).
ROW_KEYS: tuple[str, ...] = (
    "iteration",
    "n_labels",
    "ea_nnp_eV",
    "ea_ref_eV",
    "ea_error_eV",
    "ea_error_kcal_mol",
    "ea_error_signed_eV",
    "ea_error_ci95_eV",
    "ea_error_paired_eV",
    "ea_error_paired_ci95_eV",
    "ea_error_single_eV",
    "ea_nnp_mean_eV",
    "ea_nnp_sem_eV",
    "ea_nnp_replicas_eV",
    "n_replicas",
    "ea_members_eV",
    "broke",
    "stopped_reason",
    "breaking_distance_nnp_A",
    "breaking_distance_nnp_replicas_A",
    "mae_unseen_kcal_mol",
    "train_mae_kcal_mol",
    "val_mae_kcal_mol",
    "n_candidates",
    "n_selected",
    "n_augmented",
    "n_label_failures",
    "wall_s",
)
