# Sourced by the scripts: lets Open MPI run as root, with more ranks than
# cores, over the fast shared-memory transport. Values already set win.
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1}
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
export OMPI_MCA_rmaps_base_oversubscribe=${OMPI_MCA_rmaps_base_oversubscribe:-1}
export OMPI_MCA_pml=${OMPI_MCA_pml:-ob1}
export OMPI_MCA_btl=${OMPI_MCA_btl:-self,vader}
# No Infiniband/UCX probing on a single machine.
export OMPI_MCA_osc=${OMPI_MCA_osc:-pt2pt}
