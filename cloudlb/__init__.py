"""kubemu.cloudlb: the cloud load-balancer stub (`kubemu cloud-lb`) for LoadBalancer Services.

    planner     pure: which listeners and targets a Service's load balancer should have
    pool        pure: the external IP pool (allocate, adopt, release)
    cost        pure: the running cost per load balancer
    health      active health checks of targets, plus failures reported by the data path
    forward     the data path: TCP and UDP listeners forwarding to healthy targets
    listeners   the running load balancers, reconciled as a diff against their plans
    controller  the sync loop: informers -> work queue -> provision / clean up
    main, cli   the process and its command
"""
